"""A user's invisible wallet (0 XLM) acts on an escrow: signed by its key, fee paid by the platform."""

from decimal import Decimal

import pytest

from escrow.client import TrustlessWorkClient, verify_unsigned
from escrow.signing import envelope_sign
from payments.models import PlatformAccount
from payments.stellar import account_load
from sandbox.escrow import DEPLOYER_CONTRACT

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_zero_xlm_wallet_funds_an_escrow_the_platform_deployed(chain, funded_user, live_server, settings):
    buyer, seller = funded_user("50.00"), funded_user("0")
    platform = PlatformAccount.objects.get()
    client = TrustlessWorkClient(base_url=live_server.url + "/sandbox/trustless-work")
    body = {
        "signer": platform.public_key,
        "engagementId": "ord_sign",
        "title": "Translation",
        "description": "2 pages",
        "amount": Decimal("30"),
        "platformFee": 2,
        "milestones": [{"description": "Delivery"}],
        "trustline": {"address": settings.STELLAR_USDC_ISSUER, "symbol": "USDC"},
        "roles": {
            "approver": buyer.wallet.public_key,
            "serviceProvider": seller.wallet.public_key,
            "platformAddress": platform.public_key,
            "releaseSigner": platform.public_key,
            "disputeResolver": platform.public_key,
            "receiver": seller.wallet.public_key,
        },
    }
    unsigned = client.deploy("single-release", body)
    envelope = verify_unsigned(
        unsigned,
        source=platform.public_key,
        contract_id=DEPLOYER_CONTRACT,
        function="deploy-single-release",
        arguments={"amount": 300_000_000},
    )
    contract = client.send_transaction(envelope_sign(envelope=envelope, signer=platform))["contractId"]

    fund = {"contractId": contract, "signer": buyer.wallet.public_key, "amount": Decimal("30")}
    envelope = verify_unsigned(
        client.escrow_call("single-release", "fund-escrow", fund),
        source=buyer.wallet.public_key,
        contract_id=contract,
        function="fund",
        arguments={"amount": 300_000_000},
    )
    platform_xlm_before = Decimal(account_load(platform.public_key)["balances"][-1]["balance"])
    assert client.send_transaction(envelope_sign(envelope=envelope, signer=buyer.wallet))["status"] == "SUCCESS"

    assert chain.usdc(buyer.wallet.public_key) == 20
    native = next(b for b in account_load(buyer.wallet.public_key)["balances"] if b["asset_type"] == "native")
    assert Decimal(native["balance"]) == 0  # the buyer still holds no XLM
    assert Decimal(account_load(platform.public_key)["balances"][-1]["balance"]) < platform_xlm_before
    (escrow,) = client.get_escrows([contract])
    assert escrow["balance"] == Decimal("30")
