"""Ledger writes: balanced journal entries and two-phase holds.

Rules every function here keeps:
- accounts are locked (`select_for_update`, primary-key order) before any balance is checked;
- an entry's postings sum to zero (PostgreSQL re-checks it at commit with a deferred trigger);
- a user's available or held balance never goes below zero (checked here and by a CHECK constraint);
- an idempotency key posts at most one entry: replaying it returns the first one.
"""

from dataclasses import dataclass

from django.db import IntegrityError, transaction

from offerhub.correlation import correlation_id_get
from payments.models import Hold, JournalEntry, LedgerAccount, Posting

Kind = LedgerAccount.Kind


class LedgerError(Exception):
    pass


@dataclass
class InsufficientFunds(LedgerError):
    account: LedgerAccount
    requested: int
    available: int

    def __str__(self):
        return f"{self.account.code} has {self.available} stroops, {self.requested} requested"


class HoldConflict(LedgerError):
    """A hold with this reference is already active for the user."""


class HoldNotFound(LedgerError):
    pass


class HoldAmountMismatch(LedgerError):
    pass


@dataclass
class HoldOwned(LedgerError):
    """The hold belongs to someone else (an order, a payment in flight) than the caller."""

    hold: Hold

    def __str__(self):
        return f"hold {self.hold.reference} belongs to its {self.hold.owner}"


def ledger_account_code(*, kind: str, user=None, reference: str = "") -> str:
    if kind in (Kind.USER_AVAILABLE, Kind.USER_HELD):
        return f"user:{user.public_id}:{'available' if kind == Kind.USER_AVAILABLE else 'held'}"
    if kind == Kind.ESCROW:
        return f"escrow:{reference}"
    return kind


def ledger_account(*, kind: str, user=None, reference: str = "") -> LedgerAccount:
    """The account for (kind, user, reference), created on first use."""
    code = ledger_account_code(kind=kind, user=user, reference=reference)
    account = LedgerAccount.objects.filter(code=code).first()
    if account is not None:
        return account
    try:
        with transaction.atomic():
            return LedgerAccount.objects.create(code=code, kind=kind, user=user, reference=reference)
    except IntegrityError:  # created concurrently
        return LedgerAccount.objects.get(code=code)


def ledger_lock(accounts) -> dict[int, LedgerAccount]:
    """Lock accounts in primary-key order (the one order every writer uses, so no deadlock)
    and return them fresh. Evaluated as a list: `exists()` or `first()` would drop the
    ORDER BY and lock an arbitrary row first."""
    pks = sorted({account.pk for account in accounts})
    return {row.pk: row for row in LedgerAccount.objects.select_for_update().filter(pk__in=pks).order_by("pk")}


def user_accounts(user) -> tuple[LedgerAccount, LedgerAccount]:
    """The member's available and held accounts: one query once both exist (every balance read)."""
    kinds = (Kind.USER_AVAILABLE, Kind.USER_HELD)
    codes = [ledger_account_code(kind=kind, user=user) for kind in kinds]
    found = {account.code: account for account in LedgerAccount.objects.filter(code__in=codes)}
    available, held = (
        found.get(code) or ledger_account(kind=kind, user=user) for code, kind in zip(codes, kinds, strict=True)
    )
    return available, held


@transaction.atomic
def ledger_post(
    *,
    idempotency_key: str,
    kind: str,
    lines: list[tuple[LedgerAccount, int]],
    description: str = "",
    metadata: dict | None = None,
) -> JournalEntry:
    """Post one balanced entry. `lines` are (account, signed stroops); positive credits.

    Replaying an idempotency key returns the first entry with `replayed` set."""
    if not lines or sum(amount for _, amount in lines) != 0 or any(amount == 0 for _, amount in lines):
        raise LedgerError("an entry needs non-zero postings that sum to zero")
    existing = JournalEntry.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        existing.replayed = True
        return existing

    deltas: dict[int, int] = {}
    for account, amount in lines:
        deltas[account.pk] = deltas.get(account.pk, 0) + amount
    locked = ledger_lock(account for account, _ in lines)
    for pk, delta in deltas.items():
        account = locked[pk]
        if not account.may_go_negative and account.balance + delta < 0:
            raise InsufficientFunds(account=account, requested=-delta, available=account.balance)

    try:
        with transaction.atomic():
            entry = JournalEntry.objects.create(
                idempotency_key=idempotency_key,
                kind=kind,
                description=description[:255],
                correlation_id=correlation_id_get() or "",
                metadata=metadata or {},
            )
    except IntegrityError:  # the same key committed meanwhile
        existing = JournalEntry.objects.get(idempotency_key=idempotency_key)
        existing.replayed = True
        return existing
    entry.replayed = False
    Posting.objects.bulk_create(Posting(entry=entry, account_id=account.pk, amount=amount) for account, amount in lines)
    for pk, delta in deltas.items():
        if delta:
            account = locked[pk]
            account.balance += delta
            account.save(update_fields=["balance", "updated_at"])
    return entry


def ledger_transfer(
    *, idempotency_key: str, kind: str, source: LedgerAccount, destination: LedgerAccount, amount: int, **extra
) -> JournalEntry:
    if amount <= 0:
        raise LedgerError("a transfer moves a positive amount")
    return ledger_post(
        idempotency_key=idempotency_key, kind=kind, lines=[(source, -amount), (destination, amount)], **extra
    )


@transaction.atomic
def hold_reserve(
    *,
    user,
    reference: str,
    amount: int,
    owner: str = Hold.Owner.BALANCE,
    idempotency_key: str | None = None,
) -> Hold:
    """available → held, under the lock of the user's accounts. `owner` is who may void or
    move the hold later (see `Hold.Owner`)."""
    available, held = user_accounts(user)
    ledger_lock([available, held])  # serialises holds of this user before the conflict check
    if Hold.objects.filter(user=user, reference=reference, status=Hold.Status.ACTIVE).exists():
        raise HoldConflict(reference)
    hold = Hold.objects.create(user=user, reference=reference, amount=amount, remaining=amount, owner=owner)
    ledger_transfer(
        idempotency_key=idempotency_key or f"hold:{hold.pk}:reserve",
        kind="hold_reserve",
        source=available,
        destination=held,
        amount=amount,
        metadata={"reference": reference, "hold": hold.pk},
    )
    return hold


def _locked_active_hold(*, user, reference: str, owner: str | None = None) -> Hold:
    """The active hold, locked; with `owner`, only if it is that owner's (else HoldOwned)."""
    # Accounts first, then the hold: the order hold_reserve and the balance services use.
    ledger_lock(user_accounts(user))
    hold = Hold.objects.select_for_update().filter(user=user, reference=reference, status=Hold.Status.ACTIVE).first()
    if hold is None:
        raise HoldNotFound(reference)
    if owner is not None and hold.owner != owner:
        raise HoldOwned(hold)
    return hold


@transaction.atomic
def hold_void(*, user, reference: str, amount: int | None = None, owner: str | None = None) -> Hold:
    """held → available, for all of the hold or part of it. With `owner`, only that owner's hold."""
    hold = _locked_active_hold(user=user, reference=reference, owner=owner)
    amount = hold.remaining if amount is None else amount
    if amount <= 0 or amount > hold.remaining:
        raise HoldAmountMismatch(f"{amount} is not within the {hold.remaining} held")
    available, held = user_accounts(user)
    step = hold.amount - hold.remaining
    ledger_transfer(
        idempotency_key=f"hold:{hold.pk}:void:{step}",
        kind="hold_void",
        source=held,
        destination=available,
        amount=amount,
        metadata={"reference": reference, "hold": hold.pk},
    )
    _consume(hold, amount, Hold.Status.VOIDED)
    return hold


@transaction.atomic
def hold_post(
    *,
    user,
    reference: str,
    destination: LedgerAccount,
    kind: str,
    amount: int | None = None,
    idempotency_key: str | None = None,
) -> Hold:
    """held → destination (escrow, external, fees, another user), for all of the hold or part of it."""
    hold = _locked_active_hold(user=user, reference=reference)
    amount = hold.remaining if amount is None else amount
    if amount <= 0 or amount > hold.remaining:
        raise HoldAmountMismatch(f"{amount} is not within the {hold.remaining} held")
    _, held = user_accounts(user)
    step = hold.amount - hold.remaining
    entry = ledger_transfer(
        idempotency_key=idempotency_key or f"hold:{hold.pk}:post:{step}",
        kind=kind,
        source=held,
        destination=destination,
        amount=amount,
        metadata={"reference": reference, "hold": hold.pk},
    )
    if entry.replayed:  # that key already moved other money: posting nothing must not consume the hold
        raise LedgerError(f"entry {entry.idempotency_key} already exists; hold {hold.pk} not posted")
    _consume(hold, amount, Hold.Status.POSTED)
    return hold


def _consume(hold: Hold, amount: int, final_status: str) -> None:
    hold.remaining -= amount
    if hold.remaining == 0:
        hold.status = final_status
    hold.save(update_fields=["remaining", "status", "updated_at"])


@transaction.atomic
def hold_split(
    *, user, reference: str, amount: int, new_reference: str, owner: str | None = None, new_owner: str
) -> Hold:
    """Move part of a hold into a hold of its own (both stay in `held`, so no entry): a
    payment in flight then owns its money, and the rest of the hold cannot pay it twice.
    With `owner`, only that owner's hold is split."""
    hold = _locked_active_hold(user=user, reference=reference, owner=owner)
    if amount <= 0 or amount > hold.remaining:
        raise HoldAmountMismatch(f"{amount} is not within the {hold.remaining} held")
    _consume(hold, amount, Hold.Status.POSTED)
    return Hold.objects.create(user=user, reference=new_reference, amount=amount, remaining=amount, owner=new_owner)
