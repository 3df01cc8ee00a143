"""Contract tests against the Trustless Work testnet: `TRUSTLESS_WORK_API_KEY=… pytest -m live`.

They check the assumptions the sandbox is built on (paths, status codes, shapes, the
unsigned transaction's source) against the real service. Skipped without a key, and
whenever the network cannot be reached (CI has no internet).
"""

import os
from decimal import Decimal

import pytest
import requests
from stellar_sdk import Keypair, Network

from escrow.client import TrustlessWorkClient, TrustlessWorkError, verify_unsigned

TESTNET_API = "https://dev.api.trustlesswork.com"
TESTNET_USDC_ISSUER = "GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5"
API_KEY = os.environ.get("TRUSTLESS_WORK_API_KEY", "")

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not API_KEY, reason="set TRUSTLESS_WORK_API_KEY to run the Trustless Work contract tests"),
]


@pytest.fixture(scope="module")
def live_client() -> TrustlessWorkClient:
    try:
        requests.head(TESTNET_API, timeout=5)
    except requests.RequestException:
        pytest.skip("the Trustless Work testnet is unreachable from here")
    return TrustlessWorkClient(base_url=TESTNET_API, api_key=API_KEY, timeout=30)


@pytest.fixture(scope="module")
def funded_account() -> Keypair:
    keypair = Keypair.random()
    response = requests.get("https://friendbot.stellar.org", params={"addr": keypair.public_key}, timeout=30)
    if not response.ok:
        pytest.skip("the Stellar testnet friendbot is unreachable")
    return keypair


def test_requests_without_the_key_are_refused():
    client = TrustlessWorkClient(base_url=TESTNET_API, api_key="", timeout=30, attempts=1)
    with pytest.raises(TrustlessWorkError) as refused:
        client.get_escrows_by_signer(Keypair.random().public_key)
    assert refused.value.status == 401


def test_deploy_answers_an_unsigned_transaction_from_the_signer(live_client, funded_account, settings):
    settings.STELLAR_NETWORK_PASSPHRASE = Network.TESTNET_NETWORK_PASSPHRASE
    signer = funded_account.public_key
    body = {
        "signer": signer,
        "engagementId": "offerhub-contract-test",
        "title": "OfferHub contract test",
        "description": "Checks the deploy call's shape",
        "amount": Decimal("1.5"),
        "platformFee": Decimal("2"),
        "milestones": [{"description": "Delivery"}],
        "trustline": {"address": TESTNET_USDC_ISSUER, "symbol": "USDC"},
        "roles": {role: signer for role in ("approver", "serviceProvider", "platformAddress", "releaseSigner")}
        | {"disputeResolver": Keypair.random().public_key, "receiver": signer},
    }
    unsigned = live_client.deploy("single-release", body)
    envelope = verify_unsigned(unsigned, source=signer, contract_id=None, function=_function_of(unsigned))
    assert envelope.transaction.source.account_id == signer


def test_reads_answer_lists(live_client, funded_account):
    assert isinstance(live_client.get_escrows_by_signer(funded_account.public_key), list)
    assert isinstance(live_client.get_escrows_by_role("approver", funded_account.public_key), list)


def test_an_unknown_contract_is_not_found_or_empty(live_client):
    unknown = "CAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    try:
        assert live_client.get_escrows([unknown]) == []
    except TrustlessWorkError as error:
        assert error.status in (400, 404)


def _function_of(xdr: str) -> str:
    """The invoked function's name, whatever the real deployer calls it (the sandbox names its own)."""
    from stellar_sdk import TransactionBuilder

    envelope = TransactionBuilder.from_xdr(xdr, Network.TESTNET_NETWORK_PASSPHRASE)
    return envelope.transaction.operations[0].host_function.invoke_contract.function_name.sc_symbol.decode()
