"""Wallets: a Stellar account per user, created and sponsored by the platform.

A user's account holds zero XLM: the platform sponsors its base reserve and USDC
trustline (one transaction: begin sponsoring, create account, change trust, end
sponsoring), and later pays its fees with fee-bump envelopes.
"""

import contextlib
import logging
from contextvars import ContextVar

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from stellar_sdk import Keypair, TransactionBuilder

from offerhub.leases import LeaseLost
from offerhub.services import event_publish
from payments.crypto import secret_encrypt
from payments.models import ChainCursor, PlatformAccount, Wallet
from payments.stellar import (
    StellarError,
    TransactionFailed,
    account_load,
    friendbot_fund,
    horizon,
    transaction_submit,
    usdc,
    usdc_balance,
)

logger = logging.getLogger(__name__)

BASE_FEE = 100
# A sponsored activation or fee bump pays at most this per operation (surge pricing).
MAX_FEE_PER_OPERATION = 10_000
DEPOSIT_CURSOR = "horizon-payments"


class PlatformNotReady(Exception):
    """`python manage.py platform_bootstrap` has not been run (or its account is not on chain)."""


# Inside platform_account_reused(): the platform account once read, else None (a list: empty
# until the first read).
_platform_reused: ContextVar[list | None] = ContextVar("platform_reused", default=None)


def platform_account() -> PlatformAccount:
    reused = _platform_reused.get()
    if reused:
        return reused[0]
    account = PlatformAccount.objects.first()
    if account is None:
        raise PlatformNotReady("no platform account: run `python manage.py platform_bootstrap`")
    if reused is not None:
        reused.append(account)
    return account


@contextlib.contextmanager
def platform_account_reused():
    """Inside, platform_account() reads the row once: an escrow's drive signs, fee-bumps and
    compares signers with it for every step. For a short run only (a key rotated meanwhile
    is seen by the next one); callers must not change the object."""
    token = _platform_reused.set([])
    try:
        yield
    finally:
        _platform_reused.reset(token)


def platform_bootstrap() -> tuple[PlatformAccount, bool]:
    """Create (or import) and fund the platform account; idempotent. Returns (account, created)."""
    account = PlatformAccount.objects.first()
    created = account is None
    if created:
        secret = settings.OFFERHUB_PLATFORM_SECRET_KEY
        keypair = Keypair.from_secret(secret) if secret else Keypair.random()
        ciphertext, version = secret_encrypt(keypair.secret)
        try:
            account = PlatformAccount.objects.create(
                public_key=keypair.public_key, encrypted_secret=ciphertext, key_version=version
            )
        except IntegrityError:
            account, created = PlatformAccount.objects.get(public_key=keypair.public_key), False
    # A key made here just now cannot be on chain yet: no lookup (Horizon would answer 404).
    fresh = created and not settings.OFFERHUB_PLATFORM_SECRET_KEY
    if fresh or account_load(account.public_key) is None:
        if settings.STELLAR_NETWORK == "mainnet":
            raise PlatformNotReady(
                f"the platform account {account.public_key} does not exist on mainnet: send it XLM to create it"
            )
        friendbot_fund(account.public_key)
    _platform_trustline(account)
    _deposit_cursor_start()
    return account, created


def platform_submission_lock(account: PlatformAccount):
    """The submission lock every transaction the platform account signs is numbered, signed and sent under."""
    from payments.withdrawals import account_submission_lock  # payments.withdrawals imports this module

    return account_submission_lock(account.public_key)


def _platform_trustline(account: PlatformAccount) -> None:
    """The platform address receives the platform fee of every escrow release in USDC."""
    if usdc_balance(account_load(account.public_key)) is not None:
        return
    with platform_submission_lock(account):
        tx = (
            TransactionBuilder(
                horizon().load_account(account.public_key), settings.STELLAR_NETWORK_PASSPHRASE, base_fee=BASE_FEE
            )
            .append_change_trust_op(usdc())
            .set_timeout(300)
            .build()
        )
        tx.sign(account.keypair())
        transaction_submit(tx)


def _deposit_cursor_start() -> None:
    """Start the deposit watcher at the current end of the payments feed: no wallet of
    ours can have received anything before the platform existed."""
    if ChainCursor.objects.filter(name=DEPOSIT_CURSOR).exists():
        return
    page = horizon().payments().order(desc=True).limit(1).call()
    records = page["_embedded"]["records"]
    ChainCursor.objects.get_or_create(
        name=DEPOSIT_CURSOR, defaults={"paging_token": records[0]["paging_token"] if records else ""}
    )


def wallet_ensure(*, user) -> Wallet:
    """The user's wallet, creating its keypair on first need and activating it after commit."""
    wallet = Wallet.objects.filter(user=user).first()
    if wallet is not None:
        return wallet
    keypair = Keypair.random()
    ciphertext, version = secret_encrypt(keypair.secret)
    try:
        with transaction.atomic():
            wallet = Wallet.objects.create(
                user=user, public_key=keypair.public_key, encrypted_secret=ciphertext, key_version=version
            )
    except IntegrityError:  # created concurrently
        return Wallet.objects.get(user=user)
    from payments.tasks import wallets_activate  # payments.tasks imports this module

    transaction.on_commit(lambda: wallets_activate.delay(wallet.pk), robust=True)
    return wallet


def _mark_active(wallet: Wallet) -> Wallet:
    with transaction.atomic():
        wallet = Wallet.objects.select_for_update().get(pk=wallet.pk)
        if wallet.status == Wallet.Status.ACTIVE:
            return wallet
        wallet.status = Wallet.Status.ACTIVE
        wallet.activated_at = timezone.now()
        wallet.activation_error = ""
        wallet.save(update_fields=["status", "activated_at", "activation_error"])
        event_publish(
            type="wallet.created",
            aggregate_type="Wallet",
            aggregate_id=wallet.user.public_id,
            payload={
                "userId": wallet.user.public_id,
                "publicKey": wallet.public_key,
                "provider": "STELLAR",
                "funded": True,
                "trustlineReady": True,
            },
            user_id=wallet.user.public_id,
            marketplace_id=wallet.user.marketplace_id,
        )
    return wallet


def wallet_activate(*, wallet: Wallet, attempts: int = 3) -> Wallet:
    """Put the wallet on chain, sponsored by the platform. Safe to run again at any point: it
    reads the wallet's row again, looks at the chain first once an activation was ever sent
    (`activation_tx_hash`), and a lost race on the platform's sequence is retried."""
    if wallet.status == Wallet.Status.ACTIVE:
        return wallet
    # Another run may have activated it since this copy was read.
    status, sent = Wallet.objects.filter(pk=wallet.pk).values_list("status", "activation_tx_hash").get()
    if status == Wallet.Status.ACTIVE:
        return Wallet.objects.get(pk=wallet.pk)
    # Only a wallet whose activation was sent before can be on chain already (its key never left
    # OfferHub): a new one needs no lookup, which Horizon would answer with a 404.
    if sent:
        on_chain = account_load(wallet.public_key)
        if on_chain is not None and usdc_balance(on_chain) is not None:
            return _mark_active(wallet)
        if on_chain is not None:
            raise StellarError("PROVIDER_ERROR", f"wallet {wallet.public_key} exists without a USDC trustline")
    platform = platform_account()
    for _ in range(attempts):
        try:
            # The platform's sequence number is one counter shared with the bridges, sweeps and
            # escrow calls it signs: load, sign and submit under its submission lock, as they do.
            with platform_submission_lock(platform) as lease:
                tx = (
                    TransactionBuilder(
                        horizon().load_account(platform.public_key),
                        settings.STELLAR_NETWORK_PASSPHRASE,
                        base_fee=MAX_FEE_PER_OPERATION,
                    )
                    .append_begin_sponsoring_future_reserves_op(wallet.public_key)
                    .append_create_account_op(wallet.public_key, "0")
                    .append_change_trust_op(usdc(), source=wallet.public_key)
                    .append_end_sponsoring_future_reserves_op(source=wallet.public_key)
                    .set_timeout(300)
                    .build()
                )
                tx.sign(platform.keypair())
                tx.sign(wallet.keypair())
                with transaction.atomic():
                    lease.fence()  # refused (LeaseLost) if a stall let another holder take the lease
                    Wallet.objects.filter(pk=wallet.pk).update(activation_tx_hash=tx.hash_hex())
                wallet.activation_tx_hash = tx.hash_hex()  # from now on, a retry looks at the chain first
                transaction_submit(tx)
        except LeaseLost:
            continue  # nothing was sent: claim the lock again and read the sequence anew
        except TransactionFailed as failure:  # handled with the lock released: the lookups are not submissions
            if failure.transaction_code == "tx_bad_seq":
                continue  # the account was used outside OfferHub's lock (another tool): rebuild
            if "op_already_exists" in failure.operation_codes and account_load(wallet.public_key):
                return wallet_activate(wallet=wallet, attempts=0)
            Wallet.objects.filter(pk=wallet.pk).update(activation_error=str(failure)[:255])
            raise
        return _mark_active(wallet)
    raise StellarError("PROVIDER_ERROR", "could not get a sequence number for the platform account")
