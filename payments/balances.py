"""Balance operations behind the API's /users/{id}/balance endpoints and the backoffice.

Each returns a BalanceChange (the user's balance before and after, and the audit row),
publishes the catalog's events and leaves nothing half-done on error.
"""

import contextlib
import hashlib
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from stellar_sdk import Keypair, TransactionBuilder

from offerhub.errors import ServiceError
from offerhub.models import AuditLog
from offerhub.money import money_from_stroops
from offerhub.services import atomic_joined, audit_record, event_publish
from payments.deposits import deposit_key
from payments.ledger import (
    HoldAmountMismatch,
    HoldConflict,
    HoldNotFound,
    HoldOwned,
    InsufficientFunds,
    hold_reserve,
    hold_split,
    hold_void,
    ledger_account,
    ledger_transfer,
    user_accounts,
    user_accounts_locked,
)
from payments.models import Hold, LedgerAccount, Wallet, Withdrawal
from payments.reconciliation import reconciliation_record, wallet_compare
from payments.stellar import (
    StellarError,
    faucet_mint,
    friendbot_fund,
    horizon,
    sandbox_chain,
    transaction_submit,
    usdc,
)
from payments.withdrawals import payment_for_request, withdrawal_submit

Kind = LedgerAccount.Kind
DISCREPANCY_TOLERANCE = 10_000_000  # $1.00 in stroops: verify answers 409 beyond it


@dataclass
class Snapshot:
    available: int
    reserved: int
    updated_at: datetime


@dataclass
class BalanceChange:
    before: Snapshot
    after: Snapshot
    audit: AuditLog | None


@dataclass(frozen=True)
class Actor:
    type: str
    id: str


def balance_snapshot(*, user, lock: bool = False) -> Snapshot:
    return balance_snapshot_of(*(user_accounts_locked(user) if lock else user_accounts(user)))


def balance_snapshot_of(available: LedgerAccount, held: LedgerAccount) -> Snapshot:
    """The balance as the user's (available, held) account rows hold it (e.g. locked ones a posting updated)."""
    return Snapshot(available.balance, held.balance, max(available.updated_at, held.updated_at))


def _audit(user, action: str, before: Snapshot, after: Snapshot, actor: Actor, extra: dict) -> AuditLog:
    return audit_record(
        action=action,
        resource_type="Balance",
        resource_id=user.public_id,
        actor_type=actor.type,
        actor_id=actor.id,
        payload_before={
            "available": money_from_stroops(before.available),
            "reserved": money_from_stroops(before.reserved),
        },
        payload_after={
            "available": money_from_stroops(after.available),
            "reserved": money_from_stroops(after.reserved),
            **extra,
        },
        user_id=user.public_id,
        marketplace_id=user.marketplace_id,
    )


def balance_hold_event(user, event_type: str, amount: int, reference: str, before: Snapshot, after: Snapshot, **extra):
    """`balance.reserved` / `balance.released` (API.md §17): every hold of a user's money that
    the catalog reports, orders', balance endpoints' and withdrawals' alike (`reference` is
    then the `orderId`, a `wd_` id for a withdrawal). Call it in the hold's transaction."""
    event_publish(
        type=event_type,
        aggregate_type="Balance",
        aggregate_id=user.public_id,
        payload={
            "userId": user.public_id,
            "amount": money_from_stroops(amount),
            "currency": "USD",
            "orderId": reference,
            "previousReservedBalance": money_from_stroops(before.reserved),
            "newReservedBalance": money_from_stroops(after.reserved),
            "previousAvailableBalance": money_from_stroops(before.available),
            "newAvailableBalance": money_from_stroops(after.available),
            **extra,
        },
        user_id=user.public_id,
        marketplace_id=user.marketplace_id,
    )


def _insufficient(requested: int, available: int) -> ServiceError:
    return ServiceError(
        "INSUFFICIENT_FUNDS",
        f"Insufficient funds: {money_from_stroops(available)} available, {money_from_stroops(requested)} requested",
        details={
            "requested": money_from_stroops(requested),
            "available": money_from_stroops(available),
            "currency": "USD",
        },
        field="amount",
    )


# Callables (reference) -> bool: whether `reference` is a marketplace order's id. An order's
# money is held and released by the order's own services only; marketplace registers the
# check at start-up (payments must not import marketplace).
order_reference_checks: list = []

OWNER_NAMES = {Hold.Owner.ORDER: "order", Hold.Owner.PAYMENT: "payment in flight"}


def _is_order(reference: str) -> bool:
    return any(check(reference) for check in order_reference_checks)


def _not_yours(reference: str, owner: str) -> ServiceError:
    """A balance endpoint asked to touch money that an order or a payment holds."""
    how = (
        "through the order (POST /orders/{id}/reserve, /cancel, /escrow/fund)"
        if owner == Hold.Owner.ORDER
        else "by the payment itself when it completes or fails"
    )
    return ServiceError(
        "INVALID_STATE",
        f"{reference} belongs to a {OWNER_NAMES[owner]}: its money is reserved and released {how}, "
        "never through the balance endpoints",
        details={"orderId": reference, "heldBy": str(owner)},
    )


def _raw_reference(reference: str, owner: str) -> None:
    """The balance endpoints (owner BALANCE) stay off every order's id, held or not yet."""
    if owner == Hold.Owner.BALANCE and _is_order(reference):
        raise _not_yours(reference, Hold.Owner.ORDER)


@atomic_joined
def balance_reserve(
    *, user, reference: str, amount: int, actor: Actor, owner: str = Hold.Owner.BALANCE
) -> BalanceChange:
    """available → held under `reference`. The balance endpoints reserve with the default
    owner and may not use an order's id; an order's services reserve with owner ORDER."""
    _raw_reference(reference, owner)
    accounts = user_accounts_locked(user)
    before = balance_snapshot_of(*accounts)
    try:
        hold_reserve(user=user, reference=reference, amount=amount, owner=owner, accounts=accounts)
    except HoldConflict:
        raise ServiceError(
            "FUNDS_ALREADY_RESERVED", f"Funds are already reserved for {reference}", details={"orderId": reference}
        ) from None
    except InsufficientFunds:
        raise _insufficient(amount, before.available) from None
    after = balance_snapshot_of(*accounts)  # the locked rows, as the posting left them
    audit = _audit(user, "balance.reserved", before, after, actor, {"orderId": reference})
    balance_hold_event(user, "balance.reserved", amount, reference, before, after)
    return BalanceChange(before, after, audit)


@contextlib.contextmanager
def _hold_errors(reference: str):
    """Map hold failures to the API's codes."""
    try:
        yield
    except HoldNotFound:
        raise ServiceError(
            "RESERVE_NOT_FOUND", f"No active reservation for {reference}", details={"orderId": reference}
        ) from None
    except HoldAmountMismatch:
        raise ServiceError(
            "RESERVE_MISMATCH_AMOUNT",
            f"The amount exceeds what is reserved for {reference}",
            details={"orderId": reference},
            field="amount",
        ) from None
    except HoldOwned as owned:
        raise _not_yours(reference, owned.hold.owner) from None


@transaction.atomic
def balance_cancel_reservation(
    *, user, reference: str, amount: int, actor: Actor, owner: str = Hold.Owner.BALANCE
) -> BalanceChange:
    """held → available. Only the hold's owner may: the balance endpoints their own holds,
    an order's services (owner ORDER) the order's."""
    _raw_reference(reference, owner)
    before = balance_snapshot(user=user, lock=True)
    with _hold_errors(reference):
        hold_void(user=user, reference=reference, amount=amount, owner=owner)
    after = balance_snapshot(user=user)
    audit = _audit(user, "balance.reservation_canceled", before, after, actor, {"orderId": reference})
    balance_hold_event(user, "balance.released", amount, reference, before, after, reason="cancel")
    return BalanceChange(before, after, audit)


# Callables (user, reference, amount) -> bool that confirm an escrow's funding on chain and
# post held → escrow; the escrow app registers one (payments must not import escrow).
escrow_funding_confirmers: list = []


def balance_deduct_reserved(*, user, reference: str, amount: int, actor: Actor, reason: str = "") -> BalanceChange:
    """held → escrow, only when the order's escrow is funded on chain (API.md §5: "on-chain
    success only"): a funding the chain confirms is posted now (the same entry the escrow's
    step runner posts, never twice); otherwise nothing moves and the answer is ESCROW_NOT_READY.
    An order's hold is the order's: its funding is the order's fund step, not this endpoint."""
    _raw_reference(reference, Hold.Owner.BALANCE)
    hold = Hold.objects.filter(user=user, reference=reference, status=Hold.Status.ACTIVE).first()
    if hold is None:
        raise ServiceError(
            "RESERVE_NOT_FOUND", f"No active reservation for {reference}", details={"orderId": reference}
        )
    if hold.owner != Hold.Owner.BALANCE:
        raise _not_yours(reference, hold.owner)
    if amount != hold.remaining:
        raise ServiceError(
            "RESERVE_MISMATCH_AMOUNT",
            f"An escrow is funded with the whole reservation for {reference}",
            details={"orderId": reference},
            field="amount",
        )
    before = balance_snapshot(user=user)
    if not any(confirm(user=user, reference=reference, amount=amount) for confirm in escrow_funding_confirmers):
        raise ServiceError(
            "ESCROW_NOT_READY",
            f"No escrow is funded for {reference}: held funds move into escrow only when its funding transaction "
            "succeeds on chain, never by a ledger entry alone",
            details={"orderId": reference},
        )
    after = balance_snapshot(user=user)
    audit = _audit(user, "balance.reserved_deducted", before, after, actor, {"orderId": reference, "reason": reason})
    return BalanceChange(before, after, audit)


def _active_wallet(user, *, whose: str) -> Wallet:
    wallet = Wallet.objects.filter(user=user, status=Wallet.Status.ACTIVE).first()
    if wallet is None:
        raise ServiceError("WALLET_NOT_FOUND", f"The {whose} has no active wallet yet")
    return wallet


def balance_release(
    *, user, seller, reference: str, amount: int, actor: Actor, principal_id: str = "", idempotency_key: str = ""
) -> tuple[BalanceChange, BalanceChange, Withdrawal]:
    """Pay held money to the seller's wallet on chain; the seller is credited when it lands.
    Only a hold of the balance endpoints' own: an order pays its seller through its escrow.
    Returns the buyer's change, the seller's change and the payment."""
    _raw_reference(reference, Hold.Owner.BALANCE)
    _active_wallet(user, whose="buyer")
    seller_wallet = _active_wallet(seller, whose="seller")
    with transaction.atomic():
        existing = payment_for_request(principal_id=principal_id, idempotency_key=idempotency_key)
        before = balance_snapshot(user=user, lock=True)
        seller_before = balance_snapshot(user=seller)
        if existing is None:
            existing = Withdrawal(
                user=user,
                amount=amount,
                purpose=Withdrawal.Purpose.RELEASE,
                destination_type=Withdrawal.DestinationType.CRYPTO,
                destination_ref=seller_wallet.public_key,
                principal_id=principal_id,
                idempotency_key=idempotency_key,
                description=f"release of {reference} to {seller.public_id}",
            )
            existing.hold_reference = existing.public_id
            # The release takes its money out of the order's hold at once, under the lock:
            # a second release (or a cancellation) can only use what is left.
            with _hold_errors(reference):
                hold_split(
                    user=user,
                    reference=reference,
                    amount=amount,
                    new_reference=existing.hold_reference,
                    owner=Hold.Owner.BALANCE,
                    new_owner=Hold.Owner.PAYMENT,
                )
            existing.save()
    release = withdrawal_submit(withdrawal=existing)
    if release.status == Withdrawal.Status.FAILED:
        raise ServiceError("STELLAR_NETWORK_ERROR", release.failure_reason or "The release payment failed")
    if release.status != Withdrawal.Status.COMPLETED:
        raise ServiceError(
            "PROVIDER_TIMEOUT",
            "The release is submitted and waiting for the Stellar network; retry "
            "this request with the same Idempotency-Key to see it settle",
        )
    with transaction.atomic():
        after = balance_snapshot(user=user)
        audit = _audit(
            user,
            "balance.released",
            before,
            after,
            actor,
            {"orderId": reference, "sellerId": seller.public_id, "transactionHash": release.transaction_hash},
        )
        balance_hold_event(user, "balance.released", amount, reference, before, after, reason="other")
    seller_change = BalanceChange(seller_before, balance_snapshot(user=seller), audit)
    return BalanceChange(before, after, audit), seller_change, release


def sandbox_mint(wallet: Wallet, amount: int, *, memo: str = "") -> str:
    """Mint sandbox USDC to the wallet; returns the transaction hash (see `faucet_mint`)."""
    return faucet_mint(address=wallet.public_key, amount=amount, memo=memo)


def sandbox_recipient_create() -> str:
    """Sandbox only: a new Stellar account that accepts USDC, to try a withdrawal to. Funded by
    friendbot and trusting USDC; its key is not kept (it only receives). Returns its address."""
    recipient = Keypair.random()
    friendbot_fund(recipient.public_key)
    envelope = (
        TransactionBuilder(horizon().load_account(recipient.public_key), settings.STELLAR_NETWORK_PASSPHRASE, 100)
        .append_change_trust_op(usdc())
        .set_timeout(300)
        .build()
    )
    envelope.sign(recipient)
    transaction_submit(envelope)
    return recipient.public_key


def _credit_memo(*, user, amount: int, principal_id: str, idempotency_key: str) -> str:
    """The mint's memo for one support credit (28 bytes, a Stellar text memo): the same for
    every retry of the request, so the faucet mints it once. The amount is part of it: the
    same key retried with another amount (after a failure nothing was stored for) is another
    mint, not a faucet refusal. Without a key, none."""
    if not idempotency_key:
        return ""
    digest = hashlib.sha256(f"{principal_id}\n{idempotency_key}\n{user.public_id}\n{amount}".encode()).hexdigest()
    return f"credit:{digest[:21]}"


def balance_adjust(
    *,
    user,
    amount: int,
    credit: bool,
    reason: str,
    reference: str = "",
    actor: Actor,
    principal_id: str = "",
    idempotency_key: str = "",
) -> BalanceChange:
    """Support credit or debit, with a reason, audited. On the sandbox chain it also mints or
    burns USDC in the user's wallet, so that chain and ledger stay equal.

    A sandbox credit mints first, keyed by the request (principal, Idempotency-Key), and
    records the mint under its transaction hash, the key the deposit watcher also uses. A
    retry after any failure (the faucet's answer lost, the ledger write failed, a crash in
    between) gets the same mint back from the faucet instead of a second one, and the mint
    is credited once: by this service or, if no retry comes, by the watcher."""
    if not reason.strip():
        raise ServiceError("VALIDATION_ERROR", "A reason is required for a manual adjustment", field="description")
    adjustments = ledger_account(kind=Kind.ADJUSTMENTS)
    available, _ = user_accounts(user)
    key_suffix = idempotency_key or timezone.now().isoformat()
    if sandbox_chain():
        wallet = _active_wallet(user, whose="user")
        if credit:
            memo = _credit_memo(user=user, amount=amount, principal_id=principal_id, idempotency_key=idempotency_key)
            tx_hash = sandbox_mint(wallet, amount, memo=memo)
            entry_key = deposit_key(tx_hash, wallet.public_key)
        else:
            before = balance_snapshot(user=user)
            if before.available < amount:
                raise _insufficient(amount, before.available)
            burn = _burn(
                user=user, wallet=wallet, amount=amount, principal_id=principal_id, idempotency_key=idempotency_key
            )
            entry_key = None
            tx_hash = burn.transaction_hash
    else:
        entry_key = f"adjustment:{principal_id}:{key_suffix}:{'credit' if credit else 'debit'}"
        tx_hash = None

    with transaction.atomic():
        before = balance_snapshot(user=user, lock=True)
        watcher_credited = False
        if credit:
            entry = ledger_transfer(
                idempotency_key=entry_key,
                kind="adjustment_credit",
                source=adjustments,
                destination=available,
                amount=amount,
                metadata={"reason": reason},
            )
            if entry.replayed and entry.kind == "adjustment_credit":
                # An earlier attempt of this credit recorded it (with its audit and event).
                return BalanceChange(before, before, None)
            # Or the deposit watcher met the mint first and credited it (its event said so):
            # nothing moves now, the support credit is still audited with its reason.
            watcher_credited = entry.replayed
        elif entry_key is not None:
            if before.available < amount:
                raise _insufficient(amount, before.available)
            ledger_transfer(
                idempotency_key=entry_key,
                kind="adjustment_debit",
                source=available,
                destination=adjustments,
                amount=amount,
                metadata={"reason": reason},
            )
        after = balance_snapshot(user=user)
        if not credit and entry_key is None:
            before = Snapshot(after.available + amount, after.reserved, before.updated_at)  # the burn held it first
        audit = _audit(
            user,
            "balance.credited" if credit else "balance.debited",
            before,
            after,
            actor,
            {
                "amount": money_from_stroops(amount),
                "reason": reason,
                "reference": reference,
                "transactionHash": tx_hash,
                **({"creditedByDepositWatcher": True} if watcher_credited else {}),
            },
        )
        if watcher_credited:
            return BalanceChange(before, after, audit)
        payload = {
            "userId": user.public_id,
            "amount": money_from_stroops(amount),
            "currency": "USD",
            "previousAvailableBalance": money_from_stroops(before.available),
            "newAvailableBalance": money_from_stroops(after.available),
        }
        if credit:
            payload |= {
                "source": "other",
                "sourceId": reference or None,
                "transactionHash": tx_hash,
                "newBalance": money_from_stroops(after.available),
            }
        else:
            payload |= {"destination": "other", "destinationId": reference or None}
        event_publish(
            type="balance.credited" if credit else "balance.debited",
            aggregate_type="Balance",
            aggregate_id=user.public_id,
            payload=payload,
            user_id=user.public_id,
            marketplace_id=user.marketplace_id,
        )
    return BalanceChange(before, after, audit)


def _burn(*, user, wallet: Wallet, amount: int, principal_id: str, idempotency_key: str) -> Withdrawal:
    with transaction.atomic():
        burn = payment_for_request(principal_id=principal_id, idempotency_key=idempotency_key)
        if burn is None:
            burn = Withdrawal.objects.create(
                user=user,
                amount=amount,
                purpose=Withdrawal.Purpose.BURN,
                destination_type=Withdrawal.DestinationType.CRYPTO,
                destination_ref=settings.STELLAR_USDC_ISSUER,
                principal_id=principal_id,
                idempotency_key=idempotency_key,
                description="support debit",
            )
            try:
                hold_reserve(user=user, reference=burn.hold_reference, amount=amount, owner=Hold.Owner.PAYMENT)
            except InsufficientFunds as exc:
                raise _insufficient(amount, exc.available) from None
    burn = withdrawal_submit(withdrawal=burn)
    if burn.status != Withdrawal.Status.COMPLETED:
        raise ServiceError(
            "PROVIDER_TIMEOUT" if burn.status == Withdrawal.Status.PENDING else "STELLAR_NETWORK_ERROR",
            burn.failure_reason or "The debit could not be settled on chain",
        )
    return burn


@dataclass
class SyncResult:
    local: int
    provider: int | None
    action: str  # none | flagged

    @property
    def discrepancy(self) -> int | None:
        return None if self.provider is None else self.provider - self.local


def balance_sync(*, user) -> SyncResult:
    """Compare the ledger with the chain and flag drift for support. Never moves money."""
    wallet = Wallet.objects.filter(user=user, status=Wallet.Status.ACTIVE).first()
    local = balance_snapshot(user=user)
    if wallet is None:
        return SyncResult(local.available + local.reserved, None, "none")
    try:
        comparison = wallet_compare(wallet=wallet)
    except StellarError:
        return SyncResult(local.available + local.reserved, None, "none")
    report = reconciliation_record(comparison=comparison)
    return SyncResult(comparison.ledger, comparison.chain, "flagged" if report is not None else "none")
