from dataclasses import dataclass
from decimal import Decimal

import pytest
import requests
from stellar_sdk import Keypair, TransactionBuilder

from payments.stellar import account_load, usdc, usdc_balance
from payments.wallets import platform_bootstrap, wallet_ensure
from tests.factories import UserFactory


@dataclass
class Chain:
    """The sandbox Horizon served by the live test server, reached over HTTP."""

    url: str
    passphrase: str

    def mint(self, account_id: str, amount: str) -> str:
        response = requests.post(f"{self.url}/faucet", data={"addr": account_id, "amount": amount}, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()["hash"]

    def usdc(self, account_id: str) -> Decimal | None:
        stroops = usdc_balance(account_load(account_id))
        return None if stroops is None else Decimal(stroops) / 10_000_000

    def outside_account(self, *, trustline: bool = True) -> Keypair:
        """An account that is not ours (an exchange, a friend's wallet)."""
        keypair = Keypair.random()
        assert requests.get(f"{self.url}/friendbot", params={"addr": keypair.public_key}, timeout=10).ok
        if trustline:
            from payments.stellar import horizon

            tx = (
                TransactionBuilder(horizon().load_account(keypair.public_key), self.passphrase, base_fee=100)
                .append_change_trust_op(usdc())
                .set_timeout(300)
                .build()
            )
            tx.sign(keypair)
            horizon().submit_transaction(tx)
        return keypair


@pytest.fixture
def chain(live_server, settings) -> Chain:
    settings.STELLAR_HORIZON_URL = live_server.url + "/sandbox/horizon"
    settings.HORIZON_TIMEOUT_SECONDS = 5
    platform_bootstrap()
    return Chain(url=settings.STELLAR_HORIZON_URL, passphrase=settings.STELLAR_NETWORK_PASSPHRASE)


@pytest.fixture
def funded_user(chain):
    """A member with an active wallet and `amount` dollars deposited and credited."""
    from payments.deposits import deposits_sync

    def make(amount: str = "100.00"):
        user = UserFactory()
        wallet = wallet_ensure(user=user)
        wallet.refresh_from_db()
        if Decimal(amount):
            chain.mint(wallet.public_key, amount)
            deposits_sync()
        return user

    return make


@pytest.fixture
def airtm(live_server, settings):
    """Our Airtm client against the sandbox Airtm the live server serves, over HTTP."""
    from payments.airtm import AirtmClient

    settings.OFFERHUB_AIRTM_BASE_URL = live_server.url + "/sandbox/airtm/v2"
    settings.OFFERHUB_AIRTM_CHECKOUT_BASE_URL = live_server.url + "/sandbox/airtm/checkout"
    return AirtmClient(backoff=0.01)


@pytest.fixture
def linked(funded_user, airtm):
    """A member with `amount` dollars in their wallet, linked to a sandbox Airtm account whose
    payouts end as `outcome`."""
    import uuid

    from django.contrib.auth import get_user_model

    from sandbox.airtm_engine import airtm_user_create
    from sandbox.models import SandboxAirtmUser

    def make(amount: str = "100.00", outcome: str = SandboxAirtmUser.PayoutOutcome.COMPLETE):
        user = funded_user(amount)
        account = airtm_user_create(email=f"m-{uuid.uuid4().hex[:10]}@airtm.sandbox", payout_outcome=outcome)
        get_user_model().objects.filter(pk=user.pk).update(airtm_user_id=account.airtm_id, airtm_email=account.email)
        return get_user_model().objects.get(pk=user.pk)

    return make
