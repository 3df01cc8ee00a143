"""Every contract rule of PROVIDERS.md ("Contract rules the sandbox must enforce"), met the way
OfferHub meets it: through `TrustlessWorkClient` over HTTP to the live sandbox, with the
unsigned transactions verified and signed by the role's own key. A refusal must reach us
as a TrustlessWorkError with our code, the provider's error name and its message."""

from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.conf import settings
from stellar_sdk import Keypair

from escrow.client import TrustlessWorkClient, TrustlessWorkError, verify_unsigned
from escrow.signing import envelope_sign
from payments.models import PlatformAccount, Wallet

pytestmark = pytest.mark.django_db(transaction=True)

SINGLE, MULTI = "single-release", "multi-release"
# The body field naming who signs each write (PROVIDERS.md's endpoint table).
SIGNER_FIELD = {
    "fund-escrow": "signer",
    "change-milestone-status": "serviceProvider",
    "approve-milestone": "approver",
    "release-funds": "releaseSigner",
    "release-milestone-funds": "releaseSigner",
    "dispute-escrow": "signer",
    "dispute-milestone": "signer",
    "resolve-dispute": "disputeResolver",
    "resolve-milestone-dispute": "disputeResolver",
    "withdraw-remaining-funds": "disputeResolver",
    "update-escrow": "signer",
}


def deploy_body(escrow_type: str, *, buyer: str, seller: str, platform: str, **changes) -> dict:
    """Single release: 20 USDC, one milestone. Multi release: two milestones of 10 USDC."""
    roles = {"approver": buyer, "serviceProvider": seller, "platformAddress": platform}
    roles |= {"releaseSigner": platform, "disputeResolver": platform}
    body = {
        "signer": platform,
        "engagementId": "ord_rules",
        "title": "Logo design",
        "description": "Three concepts",
        "platformFee": 5,
        "trustline": {"address": settings.STELLAR_USDC_ISSUER, "symbol": "USDC"},
    }
    if escrow_type == SINGLE:
        body |= {"amount": 20, "milestones": [{"description": "Concepts"}], "roles": roles | {"receiver": seller}}
    else:
        milestones = [{"description": name, "amount": 10, "receiver": seller} for name in ("Design", "Build")]
        body |= {"milestones": milestones, "roles": roles}
    return body | changes


def fund(amount) -> tuple:
    return ("fund-escrow", "buyer", {"amount": amount})


def approve(index: str) -> tuple:
    return ("approve-milestone", "buyer", {"milestoneIndex": index})


def release(index: str) -> tuple:
    return ("release-milestone-funds", "platform", {"milestoneIndex": index})


# The calls that bring a fresh escrow into each state the rules below need.
STATES = {
    (SINGLE, "deployed"): [],
    (SINGLE, "funded"): [fund(20)],
    (SINGLE, "underfunded and approved"): [fund(5), approve("0")],
    (SINGLE, "approved"): [fund(20), approve("0")],
    (SINGLE, "disputed"): [fund(20), ("dispute-escrow", "buyer", {})],
    (SINGLE, "released"): [fund(20), approve("0"), ("release-funds", "platform", {})],
    (SINGLE, "resolved"): [
        fund(20),
        ("dispute-escrow", "buyer", {}),
        ("resolve-dispute", "platform", {"distributions": [{"address": "@buyer", "amount": 20}]}),
    ],
    (MULTI, "deployed"): [],
    (MULTI, "disputed"): [fund(20), ("dispute-milestone", "buyer", {"milestoneIndex": "0"})],
    (MULTI, "released"): [fund(20), approve("0"), release("0")],
    (MULTI, "finished with 5 left"): [fund(25), approve("0"), approve("1"), release("0"), release("1")],
    (MULTI, "finished and empty"): [fund(20), approve("0"), approve("1"), release("0"), release("1")],
}


@dataclass
class Parties:
    """The escrow's roles on the live sandbox; wallets sign, the platform pays their fees."""

    client: TrustlessWorkClient
    buyer: Wallet  # approver and depositor, 100 USDC
    seller: Wallet  # service provider and receiver, no USDC
    platform: PlatformAccount  # platform address, release signer and dispute resolver

    def address(self, value):
        """Body values with "@buyer"-style markers replaced by that party's address."""
        if isinstance(value, str) and value.startswith("@"):
            return getattr(self, value[1:]).public_key
        if isinstance(value, dict):
            return {key: self.address(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.address(item) for item in value]
        return value

    def prepare(self, escrow_type: str, action: str, contract: str, who: str, fields: dict) -> str:
        """Ask for the call, verify its unsigned transaction and sign it as `who`: the XDR to send."""
        signer = getattr(self, who)
        body = {"contractId": contract, SIGNER_FIELD[action]: signer.public_key, **self.address(fields)}
        if action == "update-escrow":
            unsigned = self.client.update_escrow(escrow_type, body)
        else:
            unsigned = self.client.escrow_call(escrow_type, action, body)
        function = "fund" if action == "fund-escrow" else action
        envelope = verify_unsigned(unsigned, source=signer.public_key, contract_id=contract, function=function)
        return envelope_sign(envelope=envelope, signer=signer)

    def run(self, escrow_type: str, action: str, contract: str, who: str, fields: dict) -> dict:
        return self.client.send_transaction(self.prepare(escrow_type, action, contract, who, fields))

    def escrow_in(self, escrow_type: str, state: str) -> str:
        """Deploy an escrow and bring it into `state`; returns its contract id."""
        addresses = {name: getattr(self, name).public_key for name in ("buyer", "seller", "platform")}
        unsigned = self.client.deploy(escrow_type, deploy_body(escrow_type, **addresses))
        envelope = verify_unsigned(
            unsigned, source=self.platform.public_key, contract_id=None, function=f"deploy-{escrow_type}"
        )
        contract = self.client.send_transaction(envelope_sign(envelope=envelope, signer=self.platform))["contractId"]
        for action, who, fields in STATES[(escrow_type, state)]:
            self.run(escrow_type, action, contract, who, fields)
        return contract

    def escrow(self, contract: str) -> dict:
        (found,) = self.client.get_escrows([contract])
        return found


@pytest.fixture
def client(live_server) -> TrustlessWorkClient:
    # One attempt: a 5xx must fail the test, not be retried away.
    return TrustlessWorkClient(base_url=live_server.url + "/sandbox/trustless-work", attempts=1)


@pytest.fixture
def parties(chain, funded_user, client) -> Parties:
    return Parties(
        client=client,
        buyer=funded_user("100.00").wallet,
        seller=funded_user("0").wallet,
        platform=PlatformAccount.objects.get(),
    )


def refusal(error: TrustlessWorkError, fragment: str) -> tuple:
    """What a refusal says, with the message reduced to `fragment` when it holds it."""
    return error.status, error.code, error.provider_code, fragment if fragment in error.message else error.message


@pytest.mark.parametrize(
    ("escrow_type", "changes", "provider_code", "code", "fragment"),
    [
        (SINGLE, {"milestones": []}, "VALIDATION_ERROR", "PROVIDER_ERROR", "at least one milestone"),
        (
            SINGLE,
            {"milestones": [{"description": "m"}] * 51},
            "ESCROW_TOO_MANY_MILESTONES",
            "ESCROW_INVALID_STATE",
            "at most 50 milestones",
        ),
        (SINGLE, {"amount": 0}, "ESCROW_AMOUNT_CANNOT_BE_ZERO", "ESCROW_INVALID_STATE", "greater than 0"),
        (
            MULTI,
            {"milestones": [{"description": "m", "amount": 0, "receiver": Keypair.random().public_key}]},
            "ESCROW_AMOUNT_CANNOT_BE_ZERO",
            "ESCROW_INVALID_STATE",
            "milestones[0].amount must be > 0",
        ),
        (SINGLE, {"platformFee": 100}, "ESCROW_PLATFORM_FEE_TOO_HIGH", "ESCROW_INVALID_STATE", "from 0 to 99"),
        (SINGLE, {"title": "t" * 101}, "VALIDATION_ERROR", "PROVIDER_ERROR", "title is at most 100"),
        (SINGLE, {"description": "d" * 501}, "VALIDATION_ERROR", "PROVIDER_ERROR", "description 500"),
        (SINGLE, {"flags": {"released": True}}, "ESCROW_FLAGS_MUST_BE_FALSE", "ESCROW_INVALID_STATE", "false"),
        (
            MULTI,
            {
                "milestones": [
                    {
                        "description": "m",
                        "amount": 1,
                        "receiver": Keypair.random().public_key,
                        "flags": {"approved": True},
                    }
                ]
            },
            "ESCROW_FLAGS_MUST_BE_FALSE",
            "ESCROW_INVALID_STATE",
            "false",
        ),
    ],
)
def test_deploy_rules(chain, client, escrow_type, changes, provider_code, code, fragment):
    platform = PlatformAccount.objects.get().public_key
    buyer, seller = Keypair.random().public_key, Keypair.random().public_key
    body = deploy_body(escrow_type, buyer=buyer, seller=seller, platform=platform, **changes)
    with pytest.raises(TrustlessWorkError) as refused:
        client.deploy(escrow_type, body)
    assert refusal(refused.value, fragment) == (400, code, provider_code, fragment)


def distributions(count: int, amount) -> list[dict]:
    return [{"address": "@buyer", "amount": amount}] * count


# (action, who signs, body fields, the provider's error name, our code, a fragment of its message)
RULES = {
    (SINGLE, "deployed"): [
        ("fund-escrow", "buyer", {"amount": 0}, "ESCROW_AMOUNT_CANNOT_BE_ZERO", "ESCROW_INVALID_STATE", "than 0"),
        ("fund-escrow", "seller", {"amount": 5}, "ESCROW_INSUFFICIENT_FUNDS", "ESCROW_INSUFFICIENT_FUNDS", "too low"),
        (
            "change-milestone-status",
            "buyer",
            {"milestoneIndex": "0", "newStatus": "done"},
            "ESCROW_ONLY_SERVICE_PROVIDER_CHANGE_MILESTONE_STATUS",
            "ESCROW_INVALID_STATE",
            "only the service provider",
        ),
        (
            "approve-milestone",
            "seller",
            {"milestoneIndex": "0"},
            "ESCROW_ONLY_APPROVER_CHANGE_MILESTONE_FLAG",
            "ESCROW_INVALID_STATE",
            "only the approver",
        ),
        (
            "update-escrow",
            "buyer",
            {"escrow": {"title": "Logo"}},
            "ESCROW_ONLY_PLATFORM_ADDRESS_CAN_EXECUTE_THIS_FUNCTION",
            "ESCROW_INVALID_STATE",
            "only the platform address",
        ),
        (
            "update-escrow",
            "platform",
            {"escrow": {"flags": {"disputed": True}}},
            "ESCROW_FLAGS_MUST_BE_FALSE",
            "ESCROW_INVALID_STATE",
            "false",
        ),
        (
            "update-escrow",
            "platform",
            {"escrow": {"amount": 0}},
            "ESCROW_AMOUNT_CANNOT_BE_ZERO",
            "ESCROW_INVALID_STATE",
            "than 0",
        ),
        (
            "update-escrow",
            "platform",
            {"escrow": {"platformFee": 100}},
            "ESCROW_PLATFORM_FEE_TOO_HIGH",
            "ESCROW_INVALID_STATE",
            "from 0 to 99",
        ),
        (
            "update-escrow",
            "platform",
            {"escrow": {"title": "t" * 101}},
            "VALIDATION_ERROR",
            "PROVIDER_ERROR",
            "at most 100",
        ),
        (
            "update-escrow",
            "platform",
            {"escrow": {"milestones": [{"description": "m"}] * 51}},
            "ESCROW_TOO_MANY_MILESTONES",
            "ESCROW_INVALID_STATE",
            "at most 50",
        ),
        (
            "update-escrow",
            "platform",
            {"escrow": {"engagementId": "ord_other"}},
            "VALIDATION_ERROR",
            "PROVIDER_ERROR",
            "engagementId cannot be updated",
        ),
    ],
    (SINGLE, "funded"): [
        ("release-funds", "platform", {}, "ESCROW_NOT_COMPLETED", "ESCROW_INVALID_STATE", "must be approved"),
        (
            "dispute-escrow",
            "platform",
            {},
            "ESCROW_DISPUTE_RESOLVER_CANNOT_DISPUTE",
            "ESCROW_INVALID_STATE",
            "dispute resolver cannot dispute",
        ),
        (
            "resolve-dispute",
            "platform",
            {"distributions": distributions(1, 20)},
            "ESCROW_NOT_IN_DISPUTE",
            "ESCROW_INVALID_STATE",
            "not in dispute",
        ),
        (
            "update-escrow",
            "platform",
            {"escrow": {"title": "Logo"}},
            "ESCROW_HAS_FUNDS",
            "ESCROW_INVALID_STATE",
            "funded",
        ),
    ],
    (SINGLE, "underfunded and approved"): [
        (
            "release-funds",
            "platform",
            {},
            "ESCROW_BALANCE_NOT_ENOUGH_TO_RELEASE",
            "ESCROW_INSUFFICIENT_FUNDS",
            "holds less than its amount",
        ),
    ],
    (SINGLE, "approved"): [
        (
            "approve-milestone",
            "buyer",
            {"milestoneIndex": "0"},
            "ESCROW_MILESTONE_ALREADY_APPROVED",
            "ESCROW_INVALID_STATE",
            "already approved",
        ),
        (
            "release-funds",
            "buyer",
            {},
            "ESCROW_ONLY_RELEASE_SIGNER_CAN_RELEASE",
            "ESCROW_INVALID_STATE",
            "only the release signer",
        ),
        (
            "update-escrow",
            "platform",
            {"escrow": {"title": "Logo"}},
            "ESCROW_MILESTONE_APPROVED_CANT_CHANGE_ESCROW_PROPERTIES",
            "ESCROW_INVALID_STATE",
            "approved milestone",
        ),
    ],
    (SINGLE, "disputed"): [
        ("release-funds", "platform", {}, "ESCROW_OPENED_FOR_DISPUTE", "DISPUTE_ALREADY_OPEN", "in dispute"),
        ("dispute-escrow", "seller", {}, "ESCROW_ALREADY_IN_DISPUTE", "DISPUTE_ALREADY_OPEN", "already in dispute"),
        (
            "resolve-dispute",
            "platform",
            {"distributions": distributions(51, Decimal("0.1"))},
            "ESCROW_TOO_MANY_DISTRIBUTIONS",
            "ESCROW_INVALID_STATE",
            "at most 50",
        ),
        (
            "resolve-dispute",
            "platform",
            {"distributions": [{"address": "@buyer", "amount": 20}, {"address": "@seller", "amount": 0}]},
            "ESCROW_AMOUNT_CANNOT_BE_ZERO",
            "ESCROW_INVALID_STATE",
            "greater than 0",
        ),
        (
            "resolve-dispute",
            "platform",
            {"distributions": distributions(1, 15)},
            "ESCROW_DISTRIBUTIONS_MUST_EQUAL_BALANCE",
            "ESCROW_INVALID_STATE",
            "balance exactly",
        ),
        (
            "update-escrow",
            "platform",
            {"escrow": {"title": "Logo"}},
            "ESCROW_OPENED_FOR_DISPUTE",
            "DISPUTE_ALREADY_OPEN",
            "in dispute",
        ),
    ],
    (SINGLE, "released"): [
        (
            "change-milestone-status",
            "seller",
            {"milestoneIndex": "0", "newStatus": "redone"},
            "ESCROW_ALREADY_RELEASED",
            "ESCROW_INVALID_STATE",
            "was released",
        ),
        ("release-funds", "platform", {}, "ESCROW_ALREADY_RELEASED", "ESCROW_INVALID_STATE", "was released"),
        ("dispute-escrow", "buyer", {}, "ESCROW_ALREADY_RELEASED", "ESCROW_INVALID_STATE", "was released"),
        (
            "update-escrow",
            "platform",
            {"escrow": {"title": "Logo"}},
            "ESCROW_ALREADY_RELEASED",
            "ESCROW_INVALID_STATE",
            "was released",
        ),
    ],
    (SINGLE, "resolved"): [
        (
            "change-milestone-status",
            "seller",
            {"milestoneIndex": "0", "newStatus": "redone"},
            "ESCROW_ALREADY_RESOLVED",
            "ESCROW_INVALID_STATE",
            "was resolved",
        ),
        ("dispute-escrow", "buyer", {}, "ESCROW_ALREADY_RESOLVED", "ESCROW_INVALID_STATE", "was resolved"),
        (
            "resolve-dispute",
            "platform",
            {"distributions": distributions(1, 20)},
            "ESCROW_NOT_IN_DISPUTE",
            "ESCROW_INVALID_STATE",
            "not in dispute",
        ),
        (
            "update-escrow",
            "platform",
            {"escrow": {"title": "Logo"}},
            "ESCROW_ALREADY_RESOLVED",
            "ESCROW_INVALID_STATE",
            "was resolved",
        ),
    ],
    (MULTI, "deployed"): [
        (
            "update-escrow",
            "platform",
            {"escrow": {"milestones": [{"description": "Design", "amount": 0, "receiver": "@seller"}]}},
            "ESCROW_AMOUNT_CANNOT_BE_ZERO",
            "ESCROW_INVALID_STATE",
            "milestones[0].amount must be > 0",
        ),
        (
            "withdraw-remaining-funds",
            "platform",
            {"distributions": distributions(1, 1)},
            "ESCROW_NOT_FULLY_PROCESSED",
            "ESCROW_INVALID_STATE",
            "released or resolved first",
        ),
    ],
    (MULTI, "disputed"): [
        (
            "dispute-milestone",
            "seller",
            {"milestoneIndex": "0"},
            "ESCROW_ALREADY_IN_DISPUTE",
            "DISPUTE_ALREADY_OPEN",
            "already in dispute",
        ),
        (
            "release-milestone-funds",
            "platform",
            {"milestoneIndex": "0"},
            "ESCROW_OPENED_FOR_DISPUTE",
            "DISPUTE_ALREADY_OPEN",
            "in dispute",
        ),
        (  # within the balance (20) but above the milestone's 10
            "resolve-milestone-dispute",
            "platform",
            {"milestoneIndex": "0", "distributions": distributions(1, 15)},
            "ESCROW_DISTRIBUTIONS_EXCEED_AMOUNT",
            "ESCROW_INVALID_STATE",
            "exceed the milestone's amount",
        ),
        (
            "resolve-milestone-dispute",
            "platform",
            {"milestoneIndex": "1", "distributions": distributions(1, 5)},
            "ESCROW_NOT_IN_DISPUTE",
            "ESCROW_INVALID_STATE",
            "not in dispute",
        ),
        (
            "update-escrow",
            "platform",
            {"escrow": {"title": "Logo"}},
            "ESCROW_OPENED_FOR_DISPUTE",
            "DISPUTE_ALREADY_OPEN",
            "in dispute",
        ),
    ],
    (MULTI, "released"): [
        (
            "release-milestone-funds",
            "platform",
            {"milestoneIndex": "0"},
            "ESCROW_MILESTONE_ALREADY_RELEASED",
            "ESCROW_INVALID_STATE",
            "finished",
        ),
        (
            "dispute-milestone",
            "buyer",
            {"milestoneIndex": "0"},
            "ESCROW_MILESTONE_ALREADY_RELEASED",
            "ESCROW_INVALID_STATE",
            "finished",
        ),
        (
            "withdraw-remaining-funds",
            "platform",
            {"distributions": distributions(1, 1)},
            "ESCROW_NOT_FULLY_PROCESSED",
            "ESCROW_INVALID_STATE",
            "released or resolved first",
        ),
        (
            "update-escrow",
            "platform",
            {"escrow": {"title": "Logo"}},
            "ESCROW_MILESTONE_ALREADY_RELEASED",
            "ESCROW_INVALID_STATE",
            "finished milestone",
        ),
    ],
    (MULTI, "finished with 5 left"): [
        (
            "withdraw-remaining-funds",
            "buyer",
            {"distributions": distributions(1, 5)},
            "ESCROW_ONLY_DISPUTE_RESOLVER_CAN_EXECUTE_THIS_FUNCTION",
            "ESCROW_INVALID_STATE",
            "only the dispute resolver",
        ),
        (
            "withdraw-remaining-funds",
            "platform",
            {"distributions": distributions(51, Decimal("0.01"))},
            "ESCROW_TOO_MANY_DISTRIBUTIONS",
            "ESCROW_INVALID_STATE",
            "at most 50",
        ),
        (
            "withdraw-remaining-funds",
            "platform",
            {"distributions": [{"address": "@buyer", "amount": 5}, {"address": "@seller", "amount": 0}]},
            "ESCROW_AMOUNT_CANNOT_BE_ZERO",
            "ESCROW_INVALID_STATE",
            "greater than 0",
        ),
        (
            "withdraw-remaining-funds",
            "platform",
            {
                "distributions": [
                    {"address": "@buyer", "amount": 3},
                    {"address": "@seller", "amount": Decimal("2.0000001")},
                ]
            },
            "ESCROW_INSUFFICIENT_FUNDS_FOR_RESOLUTION",
            "ESCROW_INSUFFICIENT_FUNDS",
            "exceed the escrow's balance",
        ),
    ],
    (MULTI, "finished and empty"): [
        (
            "withdraw-remaining-funds",
            "platform",
            {"distributions": distributions(1, 1)},
            "ESCROW_INSUFFICIENT_FUNDS_TO_MAKE_THE_REFUND",
            "ESCROW_INSUFFICIENT_FUNDS",
            "holds nothing",
        ),
    ],
}


@pytest.mark.parametrize(("escrow_type", "state"), list(RULES), ids=[f"{t} {s}" for t, s in RULES])
def test_each_rule_refuses_with_its_error(parties, escrow_type, state):
    """One escrow per state answers every rule of that state: a refused call changes nothing."""
    contract = parties.escrow_in(escrow_type, state)
    before = parties.escrow(contract)
    found, expected = {}, {}
    for number, (action, who, fields, provider_code, code, fragment) in enumerate(RULES[(escrow_type, state)]):
        rule = f"{number}: {action} by {who}"
        expected[rule] = (400, code, provider_code, fragment)
        try:
            parties.prepare(escrow_type, action, contract, who, fields)
        except TrustlessWorkError as refused:
            found[rule] = refusal(refused, fragment)
        else:
            found[rule] = "accepted"
    assert found == expected
    assert parties.escrow(contract) == before


def test_a_release_overtaken_by_a_dispute_fails_when_sent_and_pays_nobody(parties, chain):
    contract = parties.escrow_in(SINGLE, "approved")
    signed_release = parties.prepare(SINGLE, "release-funds", contract, "platform", {})
    parties.run(SINGLE, "dispute-escrow", contract, "buyer", {})  # lands first
    with pytest.raises(TrustlessWorkError) as failed:
        parties.client.send_transaction(signed_release)
    # send-transaction names the error in both `message` and `error`.
    expected = (400, "DISPUTE_ALREADY_OPEN", "ESCROW_OPENED_FOR_DISPUTE", "ESCROW_OPENED_FOR_DISPUTE")
    assert refusal(failed.value, "ESCROW_OPENED_FOR_DISPUTE") == expected
    escrow = parties.escrow(contract)
    assert escrow["balance"] == 20 and escrow["flags"] == {
        "disputed": True,
        "released": False,
        "resolved": False,
        "approved": False,
    }
    assert chain.usdc(parties.seller.public_key) == 0
    assert chain.usdc(parties.buyer.public_key) == 80


def test_an_update_overtaken_by_a_deposit_fails_when_sent(parties):
    contract = parties.escrow_in(SINGLE, "deployed")
    signed_update = parties.prepare(SINGLE, "update-escrow", contract, "platform", {"escrow": {"amount": 30}})
    parties.run(SINGLE, "fund-escrow", contract, "buyer", {"amount": 20})  # lands first
    with pytest.raises(TrustlessWorkError) as failed:
        parties.client.send_transaction(signed_update)
    assert refusal(failed.value, "ESCROW_HAS_FUNDS") == (
        400,
        "ESCROW_INVALID_STATE",
        "ESCROW_HAS_FUNDS",
        "ESCROW_HAS_FUNDS",
    )
    escrow = parties.escrow(contract)
    assert (escrow["amount"], escrow["balance"]) == (20, 20)
