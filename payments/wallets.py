"""Wallets: a Stellar account per user, created and sponsored by the platform.

A user's account holds zero XLM: the platform sponsors its base reserve and USDC
trustline (one transaction: begin sponsoring, create account, change trust, end
sponsoring), and later pays its fees with fee-bump envelopes.

The platform account is the treasury (platform fees, sponsoring, fee bumps, bridges). The
escrows' platform-side calls (deploy, release, resolve) are signed by a pool of signer
accounts (`OFFERHUB_PLATFORM_SIGNERS`), one named per escrow: each signer's transactions take
turns on its sequence number, so one account for all would queue every order behind the others.
"""

import contextlib
import logging
import random
from contextvars import ContextVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from stellar_sdk import Keypair, TransactionBuilder

from offerhub.leases import LeaseLost
from offerhub.locks import lease_lock
from offerhub.services import event_publish
from payments.crypto import secret_encrypt
from payments.models import ChainCursor, PlatformAccount, PlatformSigner, Wallet
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
# A signer created from the treasury (mainnet) gets its minimum balance (two base reserves,
# 1 XLM) and a margin: it never pays a fee (the treasury fee-bumps its transactions).
SIGNER_STARTING_XLM = "2"
SIGNER_TURN_SEQUENCE = "payments_platformsigner_turn"  # payments migration 0010
# HKDF-SHA256 salt deriving the signers' keys from the treasury's (platform_signer_keypair):
# part of the derivation, never to change (the same setting must re-create the same accounts).
SIGNER_DERIVATION_SALT = b"offerhub/platform-signer/v1"


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
    platform_signers_bootstrap(treasury=account)
    _deposit_cursor_start()
    return account, created


def platform_signers_bootstrap(*, treasury: PlatformAccount) -> list[PlatformSigner]:
    """Create the signers missing up to `OFFERHUB_PLATFORM_SIGNERS` and put every one on chain;
    idempotent. Raising the setting adds signers; lowering it deletes none (escrows name them
    for good): the ones past the setting only stop getting new escrows."""
    made_here = set()  # random keys made just now: not on chain yet, no lookup (Horizon would answer 404)
    with lease_lock("platform-signers-bootstrap", timeout=60):  # two bootstraps at once add N, not 2N
        for index in range(PlatformSigner.objects.count(), settings.OFFERHUB_PLATFORM_SIGNERS):
            keypair = platform_signer_keypair(treasury=treasury, index=index)
            ciphertext, version = secret_encrypt(keypair.secret)
            PlatformSigner.objects.create(
                public_key=keypair.public_key, encrypted_secret=ciphertext, key_version=version
            )
            if not settings.OFFERHUB_PLATFORM_SECRET_KEY:  # a derived key may be on chain from another database
                made_here.add(keypair.public_key)
    signers = list(PlatformSigner.objects.order_by("pk"))
    for signer in signers:
        # Verified on chain every run, not trusted from the row: a row is saved before its
        # account is funded (mainnet funding may fail part-way), and rows from before
        # funded_at existed (payments 0011) start unverified.
        if signer.public_key in made_here or account_load(signer.public_key) is None:
            PlatformSigner.objects.filter(pk=signer.pk).update(funded_at=None)  # no new escrows meanwhile
            _signer_fund(signer, treasury)
            if account_load(signer.public_key) is None:
                raise PlatformNotReady(f"the platform signer {signer.public_key} is not on chain after funding it")
        if signer.funded_at is None:
            signer.funded_at = timezone.now()
            PlatformSigner.objects.filter(pk=signer.pk).update(funded_at=signer.funded_at)
    return signers


def platform_signer_keypair(*, treasury: PlatformAccount, index: int) -> Keypair:
    """The key of the pool's `index`-th signer (0-based, in creation order).

    With the treasury imported from OFFERHUB_PLATFORM_SECRET_KEY, derived from that secret:
    HKDF-SHA256 over its 32-byte ed25519 seed, salt SIGNER_DERIVATION_SALT, info
    "signer/<index>", 32 bytes as the signer's ed25519 seed. The signers' keys are then never
    only in the database: a new database bootstrapped with the same setting re-creates the same
    accounts, so escrows naming them can still be released and resolved. Without the setting
    (testnet, sandbox: a generated treasury) they are random, like the treasury."""
    secret = settings.OFFERHUB_PLATFORM_SECRET_KEY
    if not secret:
        return Keypair.random()
    root = Keypair.from_secret(secret)
    if root.public_key != treasury.public_key:
        logger.warning("OFFERHUB_PLATFORM_SECRET_KEY is not the platform account's key: a random signer key")
        return Keypair.random()
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=SIGNER_DERIVATION_SALT, info=f"signer/{index}".encode())
    return Keypair.from_raw_ed25519_seed(hkdf.derive(root.raw_secret_key()))


def _signer_fund(signer: PlatformSigner, treasury: PlatformAccount) -> None:
    """Put a signer on chain as platform_bootstrap does the treasury: friendbot on test
    networks; on mainnet the treasury creates it (no trustline: it never receives money)."""
    if settings.STELLAR_NETWORK != "mainnet":
        friendbot_fund(signer.public_key)
        return
    with platform_submission_lock(treasury):
        tx = (
            TransactionBuilder(
                horizon().load_account(treasury.public_key),
                settings.STELLAR_NETWORK_PASSPHRASE,
                base_fee=MAX_FEE_PER_OPERATION,
            )
            .append_create_account_op(signer.public_key, SIGNER_STARTING_XLM)
            .set_timeout(300)
            .build()
        )
        tx.sign(treasury.keypair())
        try:
            transaction_submit(tx)
        except TransactionFailed as failure:
            if "op_already_exists" not in failure.operation_codes:  # created meanwhile: done
                raise


def platform_escrow_signer_pick() -> tuple[str, str]:
    """For a new escrow: (the treasury's address, its platform signer's address).

    The first `OFFERHUB_PLATFORM_SIGNERS` signers take new escrows in turn, from a database
    sequence: nextval() never waits for another transaction, so concurrent creates spread over
    the pool without a lock, and consecutive orders (the ones running at the same time) get
    different signers. Round robin rather than "least busy": counting each signer's open steps
    at every create costs a join, and concurrent creates would all see the same counts and pick
    the same signer. One statement reads the treasury too. Only signers seen on chain by
    platform_bootstrap (funded_at) take part: one not funded yet would have its deploy refused.
    No funded signer (a database not bootstrapped since the pool came or since payments 0011,
    or the setting at 0): the treasury signs, as it did."""
    size = settings.OFFERHUB_PLATFORM_SIGNERS
    if size == 0:
        treasury = platform_account().public_key
        return treasury, treasury
    if connection.vendor != "postgresql":
        treasury = platform_account().public_key
        first = PlatformSigner.objects.order_by("pk").values_list("pk", flat=True)[:size]
        funded = PlatformSigner.objects.filter(pk__in=list(first), funded_at__isnull=False)
        pool = list(funded.values_list("public_key", flat=True))
        return treasury, (random.choice(pool) if pool else treasury)  # noqa: S311  (spreading, not security)
    signers, accounts = PlatformSigner._meta.db_table, PlatformAccount._meta.db_table
    sql = f"""
        WITH pool AS MATERIALIZED (
            SELECT id, public_key FROM (SELECT id, public_key, funded_at FROM {signers} ORDER BY id LIMIT %s) first
            WHERE funded_at IS NOT NULL
        )
        SELECT (SELECT public_key FROM {accounts} ORDER BY id LIMIT 1),
               (SELECT public_key FROM pool ORDER BY id LIMIT 1 OFFSET (
                    SELECT nextval('{SIGNER_TURN_SEQUENCE}') %% NULLIF(count(*), 0) FROM pool))
    """  # noqa: S608  (only the models' tables and a constant are formatted in)
    with connection.cursor() as cursor:
        cursor.execute(sql, [size])
        treasury, signer = cursor.fetchone()
    if treasury is None:
        raise PlatformNotReady("no platform account: run `python manage.py platform_bootstrap`")
    return treasury, signer or treasury


def platform_signer(address: str) -> PlatformSigner | PlatformAccount:
    """The platform account that signs as `address` for an escrow: one of the pool, or the
    treasury (escrows created before the pool, or with none set up, name it)."""
    treasury = platform_account()
    if address == treasury.public_key:
        return treasury
    return PlatformSigner.objects.get(public_key=address)


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
