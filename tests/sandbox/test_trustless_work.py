"""The sandbox Trustless Work engine over HTTP: real unsigned transactions, signed by the
right role with stellar-sdk, applied on the same ledger as the sandbox Horizon."""

from decimal import Decimal

import pytest
import requests
from stellar_sdk import Keypair, TransactionBuilder

from escrow.client import verify_unsigned
from sandbox.escrow import TRUSTLESS_WORK_FEE_ACCOUNT
from tests.payments.conftest import Chain

pytestmark = pytest.mark.django_db(transaction=True)


class TrustlessWork:
    def __init__(self, url: str, key: str, passphrase: str):
        self.url, self.key, self.passphrase = url, key, passphrase

    def post(self, path: str, body, key: str | None = None, method: str = "POST") -> requests.Response:
        headers = {"x-api-key": key or self.key}
        return requests.request(method, f"{self.url}{path}", json=body, headers=headers, timeout=10)

    def get(self, path: str, params) -> requests.Response:
        return requests.get(f"{self.url}{path}", params=params, headers={"x-api-key": self.key}, timeout=10)

    def run(self, path: str, body: dict, signer: Keypair, method: str = "POST") -> dict:
        """Call, sign the unsigned transaction as `signer`, send it; returns send-transaction's answer."""
        response = self.post(path, body, method=method)
        assert response.status_code == 201, response.text
        tx = TransactionBuilder.from_xdr(response.json()["unsignedTransaction"], self.passphrase)
        assert tx.transaction.source.account_id == signer.public_key
        tx.sign(signer)
        sent = self.post("/helper/send-transaction", {"signedXdr": tx.to_xdr()})
        assert sent.status_code == 200, sent.text
        return sent.json()


@pytest.fixture
def tw(live_server, settings):
    settings.STELLAR_HORIZON_URL = live_server.url + "/sandbox/horizon"
    return TrustlessWork(
        live_server.url + "/sandbox/trustless-work",
        settings.TRUSTLESS_WORK_API_KEY,
        settings.STELLAR_NETWORK_PASSPHRASE,
    )


@pytest.fixture
def parties(tw, settings):
    chain = Chain(url=settings.STELLAR_HORIZON_URL, passphrase=settings.STELLAR_NETWORK_PASSPHRASE)
    names = ("buyer", "seller", "platform")
    keys = {name: chain.outside_account() for name in names}
    chain.mint(keys["buyer"].public_key, "500")
    return chain, keys


def single_release_body(keys, amount="100.01", fee=5) -> dict:
    buyer, seller, platform = keys["buyer"].public_key, keys["seller"].public_key, keys["platform"].public_key
    from django.conf import settings

    return {
        "signer": platform,
        "engagementId": "ord_1",
        "title": "Logo design",
        "description": "Three concepts",
        "amount": amount,
        "platformFee": fee,
        "milestones": [{"description": "Concepts"}],
        "trustline": {"address": settings.STELLAR_USDC_ISSUER, "symbol": "USDC"},
        "roles": {
            "approver": buyer,
            "serviceProvider": seller,
            "platformAddress": platform,
            "releaseSigner": platform,
            "disputeResolver": platform,
            "receiver": seller,
        },
    }


def multi_release_body(keys, amounts=("10",)) -> dict:
    body = single_release_body(keys)
    del body["amount"], body["roles"]["receiver"]
    receiver = keys["seller"].public_key
    body["milestones"] = [
        {"description": f"Part {n}", "amount": a, "receiver": receiver} for n, a in enumerate(amounts)
    ]
    return body


def test_single_release_lifecycle_pays_the_seller_net_of_exact_fees(tw, parties):
    chain, keys = parties
    deployed = tw.run("/deployer/single-release", single_release_body(keys), keys["platform"])
    contract = deployed["contractId"]
    assert contract.startswith("C") and deployed["escrow"]["amount"] == 100.01
    base = {"contractId": contract}
    tw.run(
        "/escrow/single-release/fund-escrow",
        {**base, "signer": keys["buyer"].public_key, "amount": 100.01},
        keys["buyer"],
    )
    assert chain.usdc(keys["buyer"].public_key) == Decimal("399.99")
    tw.run(
        "/escrow/single-release/change-milestone-status",
        {
            **base,
            "milestoneIndex": "0",
            "newStatus": "delivered",
            "newEvidence": "https://x.test/logo",
            "serviceProvider": keys["seller"].public_key,
        },
        keys["seller"],
    )
    tw.run(
        "/escrow/single-release/approve-milestone",
        {**base, "milestoneIndex": "0", "approver": keys["buyer"].public_key},
        keys["buyer"],
    )
    tw.run(
        "/escrow/single-release/release-funds", {**base, "releaseSigner": keys["platform"].public_key}, keys["platform"]
    )
    # 100.01 at 5 %: Trustless Work 0.3 % = 0.300030, platform 5.0005, seller the rest.
    assert chain.usdc(TRUSTLESS_WORK_FEE_ACCOUNT) == Decimal("0.30003")
    assert chain.usdc(keys["platform"].public_key) == Decimal("5.0005")
    assert chain.usdc(keys["seller"].public_key) == Decimal("94.70947")
    escrow = tw.get("/helper/get-escrow-by-contract-ids", {"contractIds[]": contract, "validateOnChain": "true"})
    (shown,) = escrow.json()
    assert shown["flags"]["released"] is True and shown["balance"] == 0
    assert shown["milestones"][0] == {
        "description": "Concepts",
        "status": "delivered",
        "evidence": "https://x.test/logo",
        "approved": True,
    }


@pytest.mark.parametrize(
    ("path", "body", "signer", "code"),
    [
        (
            "approve-milestone",
            {"milestoneIndex": "0", "approver": "seller"},
            "seller",
            "ESCROW_ONLY_APPROVER_CHANGE_MILESTONE_FLAG",
        ),
        ("release-funds", {"releaseSigner": "platform"}, "platform", "ESCROW_NOT_COMPLETED"),
        ("release-funds", {"releaseSigner": "buyer"}, "buyer", "ESCROW_ONLY_RELEASE_SIGNER_CAN_RELEASE"),
        ("dispute-escrow", {"signer": "platform"}, "platform", "ESCROW_DISPUTE_RESOLVER_CANNOT_DISPUTE"),
        (
            "resolve-dispute",
            {"disputeResolver": "platform", "distributions": [{"address": "buyer", "amount": 1}]},
            "platform",
            "ESCROW_NOT_IN_DISPUTE",
        ),
        (
            "change-milestone-status",
            {"milestoneIndex": "3", "newStatus": "x", "serviceProvider": "seller"},
            "seller",
            "ESCROW_MILESTONE_NOT_FOUND",
        ),
    ],
)
def test_contract_rules_answer_their_error(tw, parties, path, body, signer, code):
    _, keys = parties
    contract = tw.run("/deployer/single-release", single_release_body(keys), keys["platform"])["contractId"]
    resolved = {k: (keys[v].public_key if isinstance(v, str) and v in keys else v) for k, v in body.items()}
    if "distributions" in resolved:
        resolved["distributions"] = [{"address": keys["buyer"].public_key, "amount": 1}]
    response = tw.post(f"/escrow/single-release/{path}", {"contractId": contract, **resolved})
    assert response.status_code == 400
    assert response.json()["error"] == code


def test_dispute_and_resolution_distributions_must_equal_the_balance(tw, parties):
    chain, keys = parties
    contract = tw.run("/deployer/single-release", single_release_body(keys, amount="50"), keys["platform"])[
        "contractId"
    ]
    base = {"contractId": contract}
    tw.run(
        "/escrow/single-release/fund-escrow", {**base, "signer": keys["buyer"].public_key, "amount": 50}, keys["buyer"]
    )
    tw.run("/escrow/single-release/dispute-escrow", {**base, "signer": keys["buyer"].public_key}, keys["buyer"])
    again = tw.post("/escrow/single-release/dispute-escrow", {**base, "signer": keys["seller"].public_key})
    assert again.json()["error"] == "ESCROW_ALREADY_IN_DISPUTE"
    uneven = tw.post(
        "/escrow/single-release/resolve-dispute",
        {
            **base,
            "disputeResolver": keys["platform"].public_key,
            "distributions": [{"address": keys["buyer"].public_key, "amount": 30}],
        },
    )
    assert uneven.json()["error"] == "ESCROW_DISTRIBUTIONS_MUST_EQUAL_BALANCE"
    tw.run(
        "/escrow/single-release/resolve-dispute",
        {
            **base,
            "disputeResolver": keys["platform"].public_key,
            "distributions": [
                {"address": keys["buyer"].public_key, "amount": 30},
                {"address": keys["seller"].public_key, "amount": 20},
            ],
        },
        keys["platform"],
    )
    # Each distribution pays its fees pro rata (0.3 % and 5 %).
    assert chain.usdc(keys["buyer"].public_key) == Decimal("450") + Decimal("30") * Decimal("0.947")
    assert chain.usdc(keys["seller"].public_key) == Decimal("20") * Decimal("0.947")


def test_a_transaction_signed_by_another_key_or_changed_is_refused(tw, parties):
    from stellar_sdk import Account

    from sandbox.escrow import DEPLOYER_CONTRACT, call_arguments

    _, keys = parties
    response = tw.post("/deployer/single-release", single_release_body(keys))
    tx = TransactionBuilder.from_xdr(response.json()["unsignedTransaction"], tw.passphrase)
    tx.sign(Keypair.random())
    refused = tw.post("/helper/send-transaction", {"signedXdr": tx.to_xdr()})
    assert refused.status_code == 400
    assert refused.json() == {
        "status": "FAILED",
        "message": "tx_bad_auth",
        "extras": {"result_codes": {"transaction": "tx_bad_auth"}},  # Horizon's, passed on
    }
    # A correctly signed invocation that this service never handed out (here: other arguments).
    sequence = TransactionBuilder.from_xdr(response.json()["unsignedTransaction"], tw.passphrase).transaction.sequence
    forged = (
        TransactionBuilder(Account(keys["platform"].public_key, sequence - 1), tw.passphrase, base_fee=100)
        .append_invoke_contract_function_op(DEPLOYER_CONTRACT, "deploy_single_release", [call_arguments({"amount": 1})])
        .set_timeout(300)
        .build()
    )
    forged.sign(keys["platform"])
    refused = tw.post("/helper/send-transaction", {"signedXdr": forged.to_xdr()})
    assert refused.status_code == 400 and refused.json()["message"] == "op_not_supported"


def test_api_key_and_rate_limit_and_indexer_lag(tw, parties, settings):
    _, keys = parties
    assert tw.post("/deployer/single-release", single_release_body(keys), key="wrong").status_code == 401
    settings.SANDBOX_TRUSTLESS_WORK_INDEXER_LAG = True
    sent = tw.run("/deployer/single-release", single_release_body(keys), keys["platform"])
    fund = {"contractId": sent["contractId"], "signer": keys["buyer"].public_key, "amount": 1}
    lagging = tw.post("/escrow/single-release/fund-escrow", fund)
    assert lagging.status_code == 400 and lagging.json()["message"] == "Escrow not found"
    from sandbox.models import SandboxEscrow

    deploy_hash = SandboxEscrow.objects.get(contract_id=sent["contractId"]).deploy_tx_hash
    assert tw.post("/indexer/update-from-txHash", {"txHash": deploy_hash}).status_code == 200
    assert tw.post("/escrow/single-release/fund-escrow", fund).status_code == 201
    settings.SANDBOX_TRUSTLESS_WORK_RATE_LIMIT = 2
    import secrets

    settings.TRUSTLESS_WORK_API_KEY = f"fresh-{secrets.token_hex(4)}"
    statuses = [
        tw.post("/escrow/single-release/fund-escrow", fund, key=settings.TRUSTLESS_WORK_API_KEY).status_code
        for _ in range(3)
    ]
    assert statuses == [201, 201, 429]


def test_reads_by_signer_role_and_balances_with_filters(tw, parties):
    _, keys = parties
    contract = tw.run("/deployer/single-release", single_release_body(keys), keys["platform"])["contractId"]
    tw.run(
        "/escrow/single-release/fund-escrow",
        {"contractId": contract, "signer": keys["buyer"].public_key, "amount": 12.5},
        keys["buyer"],
    )
    by_signer = tw.get(
        "/helper/get-escrows-by-signer", {"signer": keys["platform"].public_key, "engagementId": "ord_1"}
    ).json()
    assert [e["contractId"] for e in by_signer] == [contract]
    assert (
        tw.get("/helper/get-escrows-by-signer", {"signer": keys["platform"].public_key, "engagementId": "other"}).json()
        == []
    )
    working = tw.get(
        "/helper/get-escrows-by-role",
        {"role": "approver", "roleAddress": keys["buyer"].public_key, "status": "working"},
    ).json()
    assert [e["contractId"] for e in working] == [contract]
    assert (
        tw.get(
            "/helper/get-escrows-by-role",
            {"role": "approver", "roleAddress": keys["buyer"].public_key, "status": "released"},
        ).json()
        == []
    )
    assert tw.get("/helper/get-escrows-by-role", {"role": "nobody", "roleAddress": "x"}).status_code == 400
    balances = tw.get(
        "/escrow/single-release/get-multiple-escrow-balance",
        {"signer": keys["platform"].public_key, "addresses[]": [contract, "C" + "A" * 55]},
    ).json()
    assert balances == [{"address": contract, "balance": 12.5}]


def test_update_escrow_rewrites_the_terms_until_the_escrow_is_funded(tw, parties):
    _, keys = parties
    contract = tw.run("/deployer/single-release", single_release_body(keys), keys["platform"])["contractId"]
    base = {"contractId": contract}
    status = {**base, "milestoneIndex": "0", "newStatus": "sketching", "serviceProvider": keys["seller"].public_key}
    tw.run("/escrow/single-release/change-milestone-status", status, keys["seller"])
    update = {
        **base,
        "signer": keys["platform"].public_key,
        "escrow": {
            "title": "Logo and icon",
            "amount": 120,
            "platformFee": 3,
            "milestones": [{"description": "Concepts"}, {"description": "Icon"}],
            "roles": {"receiver": keys["buyer"].public_key},  # a role left out keeps its address
            "engagementId": "ord_1",  # echoing a fixed property unchanged is fine
        },
    }
    response = tw.post("/escrow/single-release/update-escrow", update, method="PUT")
    assert response.status_code == 201, response.text
    verify_unsigned(
        response.json()["unsignedTransaction"],
        source=keys["platform"].public_key,
        contract_id=contract,
        function="update-escrow",
        arguments={"amount": 1_200_000_000},
    )
    tw.run("/escrow/single-release/update-escrow", update, keys["platform"], method="PUT")
    (shown,) = tw.get("/helper/get-escrow-by-contract-ids", {"contractIds[]": contract}).json()
    assert (shown["title"], shown["amount"], shown["platformFee"], shown["engagementId"]) == (
        "Logo and icon",
        120,
        3,
        "ord_1",
    )
    assert shown["roles"]["receiver"] == keys["buyer"].public_key
    assert shown["roles"]["serviceProvider"] == keys["seller"].public_key
    assert [(m["description"], m["status"]) for m in shown["milestones"]] == [
        ("Concepts", "sketching"),  # the service provider's status survives the platform's update
        ("Icon", "pending"),
    ]
    late = TransactionBuilder.from_xdr(
        tw.post("/escrow/single-release/update-escrow", update, method="PUT").json()["unsignedTransaction"],
        tw.passphrase,
    )
    tw.run(
        "/escrow/single-release/fund-escrow", {**base, "signer": keys["buyer"].public_key, "amount": 1}, keys["buyer"]
    )
    funded = tw.post("/escrow/single-release/update-escrow", update, method="PUT")
    assert (funded.status_code, funded.json()["error"]) == (400, "ESCROW_HAS_FUNDS")
    late.sign(keys["platform"])  # prepared before the deposit: the contract refuses it when applied
    sent = tw.post("/helper/send-transaction", {"signedXdr": late.to_xdr()})
    assert sent.status_code == 400
    assert sent.json() == {"status": "FAILED", "message": "ESCROW_HAS_FUNDS", "error": "ESCROW_HAS_FUNDS"}
    assert tw.post("/escrow/single-release/update-escrow", update).status_code == 405  # PUT only


def test_withdraw_remaining_funds_pays_the_leftover_net_of_fees(tw, parties):
    chain, keys = parties
    contract = tw.run("/deployer/multi-release", multi_release_body(keys), keys["platform"])["contractId"]
    base = {"contractId": contract}
    platform = keys["platform"].public_key
    tw.run(
        "/escrow/multi-release/fund-escrow", {**base, "signer": keys["buyer"].public_key, "amount": 12}, keys["buyer"]
    )
    tw.run(
        "/escrow/multi-release/approve-milestone",
        {**base, "milestoneIndex": "0", "approver": keys["buyer"].public_key},
        keys["buyer"],
    )
    tw.run(
        "/escrow/multi-release/release-milestone-funds",
        {**base, "milestoneIndex": "0", "releaseSigner": platform},
        keys["platform"],
    )
    assert chain.usdc(keys["seller"].public_key) == Decimal("9.47")
    withdraw = {
        **base,
        "disputeResolver": platform,
        "distributions": [
            {"address": keys["buyer"].public_key, "amount": 1.5},
            {"address": keys["seller"].public_key, "amount": 0.5},
        ],
    }
    tw.run("/escrow/multi-release/withdraw-remaining-funds", withdraw, keys["platform"])
    # Each distribution pays its fees pro rata (0.3 % and 5 %), like a resolution.
    assert chain.usdc(keys["buyer"].public_key) == Decimal("488") + Decimal("1.4205")
    assert chain.usdc(keys["seller"].public_key) == Decimal("9.47") + Decimal("0.4735")
    (shown,) = tw.get("/helper/get-escrow-by-contract-ids", {"contractIds[]": contract}).json()
    assert shown["balance"] == 0
    emptied = tw.post("/escrow/multi-release/withdraw-remaining-funds", withdraw)
    assert emptied.json()["error"] == "ESCROW_INSUFFICIENT_FUNDS_TO_MAKE_THE_REFUND"
    assert tw.post("/escrow/single-release/withdraw-remaining-funds", withdraw).status_code == 404


@pytest.mark.parametrize(
    ("path", "changes", "error"),
    [
        # An approved milestone was silently deployed as unapproved; a fee of 2.555 % charged 2.56 %.
        (
            "/deployer/single-release",
            {"milestones": [{"description": "C", "approved": True}]},
            "ESCROW_FLAGS_MUST_BE_FALSE",
        ),
        ("/deployer/single-release", {"platformFee": "2.555"}, "VALIDATION_ERROR"),
        ("/deployer/single-release", {"amount": "Infinity"}, "VALIDATION_ERROR"),
        ("/deployer/single-release", {"engagementId": "x" * 201}, "VALIDATION_ERROR"),
        ("/deployer/single-release", {"amount": 10**13}, "VALIDATION_ERROR"),  # more stroops than an int64 holds
        ("/deployer/single-release", {"platformFee": "five"}, "VALIDATION_ERROR"),
        ("/deployer/single-release", {"receiverMemo": "memo"}, "VALIDATION_ERROR"),
        ("/deployer/single-release", {"milestones": ["Concepts"]}, "VALIDATION_ERROR"),
        ("/deployer/single-release", {"flags": ["disputed"]}, "VALIDATION_ERROR"),
        ("/escrow/single-release/fund-escrow", {"contractId": {"id": 1}}, "VALIDATION_ERROR"),
        ("/escrow/single-release/fund-escrow", {"signer": ["G"]}, "VALIDATION_ERROR"),
        ("/escrow/single-release/resolve-dispute", {"distributions": ["all to the buyer"]}, "VALIDATION_ERROR"),
    ],
)
def test_bad_values_are_refused_with_their_error(tw, parties, path, changes, error):
    """Each of these used to crash the sandbox (a 500, at once or at send-transaction) or be kept
    other than asked."""
    _, keys = parties
    if path.startswith("/deployer"):
        body = single_release_body(keys) | changes
    else:
        contract = tw.run("/deployer/single-release", single_release_body(keys), keys["platform"])["contractId"]
        platform = keys["platform"].public_key
        body = {"contractId": contract, "signer": platform, "disputeResolver": platform, "amount": 1} | changes
    response = tw.post(path, body)
    assert (response.status_code, response.json().get("error")) == (400, error), response.text
