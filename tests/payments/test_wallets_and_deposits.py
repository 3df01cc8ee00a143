"""Wallets on the sandbox chain, deposits credited once, reconciliation reports drift."""

from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.signals import request_started

from offerhub.models import Event
from payments.crypto import key_version
from payments.deposits import deposits_sync
from payments.ledger import user_accounts
from payments.models import PlatformAccount, PlatformSigner, ReconciliationReport, Wallet
from payments.reconciliation import wallets_reconcile
from payments.stellar import account_load
from payments.wallets import platform_bootstrap, wallet_ensure
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_platform_bootstrap_is_idempotent(chain):
    first = PlatformAccount.objects.get()
    again, created = platform_bootstrap()
    assert not created and again.pk == first.pk
    assert PlatformAccount.objects.count() == 1
    assert Decimal(account_load(first.public_key)["balances"][-1]["balance"]) > 0


def test_wallet_is_sponsored_by_the_platform_and_needs_no_xlm(chain):
    user = UserFactory()
    wallet = wallet_ensure(user=user)
    wallet.refresh_from_db()
    assert wallet.status == Wallet.Status.ACTIVE
    account = account_load(wallet.public_key)
    native = next(b for b in account["balances"] if b["asset_type"] == "native")
    assert Decimal(native["balance"]) == 0
    assert account["sponsor"] == PlatformAccount.objects.get().public_key
    assert chain.usdc(wallet.public_key) == 0
    assert wallet_ensure(user=user).pk == wallet.pk  # one wallet per user
    event = Event.objects.get(type="wallet.created")
    assert event.payload["publicKey"] == wallet.public_key and event.payload["trustlineReady"] is True


def test_secrets_are_encrypted_at_rest_and_rotate(chain, settings):
    from cryptography.fernet import Fernet

    wallet = wallet_ensure(user=UserFactory())
    secret = wallet.keypair().secret
    assert secret not in wallet.encrypted_secret
    assert secret not in repr(wallet) and secret not in str(wallet)
    old_version = wallet.key_version

    new_key = Fernet.generate_key().decode()
    settings.OFFERHUB_WALLET_KEYS = [new_key, *settings.OFFERHUB_WALLET_KEYS]
    call_command("rotate_wallet_keys")
    wallet.refresh_from_db()
    assert wallet.key_version == key_version(new_key) != old_version
    settings.OFFERHUB_WALLET_KEYS = [new_key]  # the old key is gone; secrets still decrypt
    assert wallet.keypair().secret == secret
    assert PlatformAccount.objects.get().key_version == key_version(new_key)
    signers = PlatformSigner.objects.all()
    assert signers and all(signer.key_version == key_version(new_key) and signer.keypair() for signer in signers)


def test_deposits_are_credited_once_across_reruns(chain, funded_user):
    user = funded_user("0")
    wallet = user.wallet
    tx_hash = chain.mint(wallet.public_key, "25.5")
    chain.mint(chain.outside_account().public_key, "99")  # not ours: ignored
    assert deposits_sync() == 1
    assert deposits_sync() == 0
    available, _ = user_accounts(user)
    assert available.balance == 255_000_000
    credited = Event.objects.filter(type="balance.credited")
    assert credited.count() == 1
    assert credited.get().payload["transactionHash"] == tx_hash
    assert credited.get().payload["amount"] == "25.50"

    # A watcher that lost its cursor re-reads the feed and still credits nothing twice.
    from payments.models import ChainCursor

    ChainCursor.objects.update(paging_token="")
    assert deposits_sync() == 0
    available.refresh_from_db()
    assert available.balance == 255_000_000


def test_watcher_requests_do_not_grow_with_the_number_of_wallets(chain, funded_user):
    users = [funded_user("0") for _ in range(12)]
    for user in users:
        chain.mint(user.wallet.public_key, "1")
    feed_requests: list[str] = []

    def count(sender, environ, **kwargs):
        if "/sandbox/horizon/" in environ.get("PATH_INFO", ""):
            feed_requests.append(environ["PATH_INFO"])

    request_started.connect(count)
    try:
        assert deposits_sync() == 12
    finally:
        request_started.disconnect(count)
    assert feed_requests == ["/sandbox/horizon/payments"]  # one page, whatever the wallet count


def test_reconciliation_reports_drift_and_never_moves_money(chain, funded_user):
    user = funded_user("10.00")
    assert wallets_reconcile() == 0
    chain.mint(user.wallet.public_key, "5")  # on chain, not yet in the ledger
    assert wallets_reconcile() == 1
    report = ReconciliationReport.objects.get(status="OPEN")
    assert report.difference == 50_000_000
    available, _ = user_accounts(user)
    assert available.balance == 100_000_000  # nothing "fixed"
    deposits_sync()
    assert wallets_reconcile() == 0
    report.refresh_from_db()
    assert report.status == "RESOLVED"


def test_ledger_equals_chain_after_deposits(chain, funded_user):
    users = [funded_user("12.34") for _ in range(3)]
    for user in users:
        available, held = user_accounts(user)
        assert chain.usdc(user.wallet.public_key) * 10_000_000 == available.balance + held.balance
    from payments.ledger import ledger_account
    from payments.models import LedgerAccount

    # What came in from the chain, as the contra account saw it, is what the chain holds for us.
    external = ledger_account(kind=LedgerAccount.Kind.EXTERNAL_STELLAR)
    on_chain = sum(chain.usdc(user.wallet.public_key) for user in users)
    assert -external.balance == on_chain * 10_000_000 == 3 * 123_400_000
