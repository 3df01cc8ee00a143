"""OfferHub's Trustless Work client against the sandbox engine, over HTTP."""

import time
from decimal import Decimal

import pytest
from stellar_sdk import Network, Preconditions, TimeBounds, TransactionBuilder, TransactionEnvelope

from escrow.client import TamperedTransaction, TrustlessWorkClient, TrustlessWorkError, verify_unsigned
from sandbox.escrow import DEPLOYER_CONTRACT
from sandbox.models import SandboxEscrowCall, SandboxFault
from tests.payments.conftest import Chain
from tests.sandbox.test_trustless_work import single_release_body

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(live_server, settings):
    settings.STELLAR_HORIZON_URL = live_server.url + "/sandbox/horizon"
    return TrustlessWorkClient(base_url=live_server.url + "/sandbox/trustless-work", backoff=0.05)


@pytest.fixture
def keys(client, settings):
    chain = Chain(url=settings.STELLAR_HORIZON_URL, passphrase=settings.STELLAR_NETWORK_PASSPHRASE)
    found = {name: chain.outside_account() for name in ("buyer", "seller", "platform")}
    chain.mint(found["buyer"].public_key, "200")
    return found


def deploy(client, keys) -> str:
    xdr = client.deploy("single-release", single_release_body(keys, amount=Decimal("100.01")))
    envelope = verify_unsigned(
        xdr,
        source=keys["platform"].public_key,
        contract_id=DEPLOYER_CONTRACT,
        function="deploy-single-release",
        arguments={"amount": 1_000_100_000},
    )
    envelope.sign(keys["platform"])
    return client.send_transaction(envelope.to_xdr())["contractId"]


def test_deploy_and_fund_through_the_client_with_verification(client, keys):
    contract = deploy(client, keys)
    body = {"contractId": contract, "signer": keys["buyer"].public_key, "amount": Decimal("100.01")}
    xdr = client.escrow_call("single-release", "fund-escrow", body)
    envelope = verify_unsigned(
        xdr,
        source=keys["buyer"].public_key,
        contract_id=contract,
        function="fund",
        arguments={"amount": 1_000_100_000, "signer": keys["buyer"].public_key},
    )
    envelope.sign(keys["buyer"])
    assert client.send_transaction(envelope.to_xdr())["status"] == "SUCCESS"
    (escrow,) = client.get_escrows([contract])
    assert escrow["balance"] == Decimal("100.01")  # amounts come back as exact Decimals


@pytest.mark.parametrize(
    ("expectation", "difference"),
    [
        ({"source": "seller"}, "source account"),
        ({"function": "release-funds"}, "function"),
        ({"amount": 1}, "arguments.amount"),
        ({"contract": "other"}, "contract"),
    ],
)
def test_a_tampered_transaction_is_refused_before_signing(client, keys, expectation, difference):
    contract = deploy(client, keys)
    body = {"contractId": contract, "signer": keys["buyer"].public_key, "amount": 10}
    xdr = client.escrow_call("single-release", "fund-escrow", body)
    asked = {
        "source": keys[expectation.get("source", "buyer")].public_key,
        "contract_id": "CAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        if "contract" in expectation
        else contract,
        "function": expectation.get("function", "fund"),
        "arguments": {"amount": expectation.get("amount", 100_000_000)},
    }
    with pytest.raises(TamperedTransaction) as refused:
        verify_unsigned(xdr, **asked)
    assert difference in refused.value.details["differences"]


def _rewritten(xdr: str, *, fee: int | None = None, time_bounds: TimeBounds | bool | None = False) -> str:
    """The provider's transaction with its fee or validity changed (as a careless or hostile builder might)."""
    envelope = TransactionEnvelope.from_xdr(xdr, Network.TESTNET_NETWORK_PASSPHRASE)
    if fee is not None:
        envelope.transaction.fee = fee
    if time_bounds is not False:
        envelope.transaction.preconditions = Preconditions(time_bounds=time_bounds) if time_bounds else None
    return envelope.to_xdr()


@pytest.mark.parametrize(
    ("change", "difference"),
    [
        ({"fee": 50_000_001}, "fee"),  # above OFFERHUB_MAX_TRANSACTION_FEE: the platform would pay it
        ({"fee": 20_001}, "fee"),  # above the fee bump's per-operation ceiling (no resource fee here)
        ({"time_bounds": None}, "time bounds"),  # valid for ever
        ({"time_bounds": "no-max"}, "time bounds"),
        ({"time_bounds": "a-day"}, "time bounds"),
        ({"time_bounds": "later"}, "time bounds"),  # not valid yet: it would be sent some other time
    ],
)
def test_a_transaction_costing_too_much_or_valid_too_long_is_refused(client, keys, settings, change, difference):
    contract = deploy(client, keys)
    body = {"contractId": contract, "signer": keys["buyer"].public_key, "amount": 10}
    xdr = client.escrow_call("single-release", "fund-escrow", body)
    asked = {"source": keys["buyer"].public_key, "contract_id": contract, "function": "fund"}
    assert settings.STELLAR_NETWORK_PASSPHRASE == Network.TESTNET_NETWORK_PASSPHRASE
    verify_unsigned(xdr, **asked)  # as built: accepted
    now = int(time.time())
    bounds = {
        "no-max": TimeBounds(0, 0),
        "a-day": TimeBounds(0, now + 86_400),
        "later": TimeBounds(now + 3_600, now + 3_900),
        None: None,
    }
    if "time_bounds" in change:
        change = {"time_bounds": bounds[change["time_bounds"]]}
    with pytest.raises(TamperedTransaction) as refused:
        verify_unsigned(_rewritten(xdr, **change), **asked)
    assert refused.value.details["differences"] == [difference]


def test_the_fee_ceiling_is_the_operators_setting(client, keys, settings):
    contract = deploy(client, keys)
    xdr = client.escrow_call(
        "single-release", "fund-escrow", {"contractId": contract, "signer": keys["buyer"].public_key, "amount": 10}
    )
    asked = {"source": keys["buyer"].public_key, "contract_id": contract, "function": "fund"}
    settings.OFFERHUB_MAX_TRANSACTION_FEE = 99
    with pytest.raises(TamperedTransaction) as refused:
        verify_unsigned(xdr, **asked)  # the sandbox's fee is 100 stroops
    assert refused.value.details["differences"] == ["fee"]


def test_the_fee_ceiling_counts_what_the_fee_bump_would_pay(client, keys, settings):
    contract = deploy(client, keys)
    xdr = client.escrow_call(
        "single-release", "fund-escrow", {"contractId": contract, "signer": keys["buyer"].public_key, "amount": 10}
    )
    asked = {"source": keys["buyer"].public_key, "contract_id": contract, "function": "fund"}
    # The inner transaction asks 100 stroops; its fee bump pays up to 10,000 for it and 10,000
    # for the bump itself (no resource fee here): 20,000 is what the platform may be charged.
    settings.OFFERHUB_MAX_TRANSACTION_FEE = 20_000
    verify_unsigned(xdr, **asked)
    settings.OFFERHUB_MAX_TRANSACTION_FEE = 19_999
    with pytest.raises(TamperedTransaction) as refused:
        verify_unsigned(xdr, **asked)
    assert refused.value.details["differences"] == ["fee"]


def test_contract_errors_keep_the_provider_message_and_map_to_our_codes(client, keys):
    contract = deploy(client, keys)
    with pytest.raises(TrustlessWorkError) as error:
        client.escrow_call(
            "single-release",
            "approve-milestone",
            {"contractId": contract, "milestoneIndex": "0", "approver": keys["seller"].public_key},
        )
    assert error.value.code == "ESCROW_INVALID_STATE"
    assert error.value.provider_code == "ESCROW_ONLY_APPROVER_CHANGE_MILESTONE_FLAG"
    assert "only the approver" in error.value.message
    with pytest.raises(TrustlessWorkError) as missing:
        client.escrow_call(
            "single-release",
            "fund-escrow",
            {"contractId": "C" + "A" * 55, "signer": keys["buyer"].public_key, "amount": 1},
        )
    assert missing.value.code == "ESCROW_NOT_FOUND"
    with pytest.raises(TrustlessWorkError) as unauthorized:
        TrustlessWorkClient(base_url=client.base_url, api_key="wrong").get_escrows([contract])
    assert unauthorized.value.code == "PROVIDER_UNAVAILABLE" and unauthorized.value.status == 401


def test_a_429_storm_is_survived_without_a_duplicate_call(client, keys):
    contract = deploy(client, keys)
    SandboxFault.objects.create(service="trustless-work", path_contains="/fund-escrow", status_code=429, remaining=3)
    started = time.monotonic()
    body = {"contractId": contract, "signer": keys["buyer"].public_key, "amount": 10}
    xdr = client.escrow_call("single-release", "fund-escrow", body)
    assert time.monotonic() - started >= 3  # it waited as Retry-After asked
    assert SandboxEscrowCall.objects.filter(action="fund").count() == 1
    envelope = TransactionBuilder.from_xdr(xdr, client_passphrase())
    envelope.sign(keys["buyer"])
    assert client.send_transaction(envelope.to_xdr())["status"] == "SUCCESS"


def test_send_transaction_is_never_retried_blindly(client, keys):
    SandboxFault.objects.create(
        service="trustless-work", path_contains="/send-transaction", status_code=503, remaining=1
    )
    xdr = client.deploy("single-release", single_release_body(keys))
    envelope = TransactionBuilder.from_xdr(xdr, client_passphrase())
    envelope.sign(keys["platform"])
    with pytest.raises(TrustlessWorkError) as error:
        client.send_transaction(envelope.to_xdr())
    assert error.value.code == "PROVIDER_ERROR" and error.value.status == 503
    assert not SandboxFault.objects.filter(remaining__gt=0).exists()  # exactly one request was made
    assert client.send_transaction(envelope.to_xdr())["contractId"]  # the caller decides to resend


def test_a_timeout_is_reported_as_such(client, keys, settings):
    SandboxFault.objects.create(
        service="trustless-work", path_contains="/get-escrow", timeout=True, timeout_seconds=1.5, remaining=1
    )
    slow = TrustlessWorkClient(base_url=client.base_url, timeout=0.5, attempts=1)
    with pytest.raises(TrustlessWorkError) as error:
        slow.get_escrows(["C" + "A" * 55])
    assert error.value.code == "PROVIDER_TIMEOUT"


def client_passphrase() -> str:
    from django.conf import settings

    return settings.STELLAR_NETWORK_PASSPHRASE
