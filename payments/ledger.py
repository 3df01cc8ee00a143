"""Ledger writes: balanced journal entries and two-phase holds.

Rules every function here keeps:
- accounts are locked (`select_for_update`, primary-key order) before any balance is checked;
- an entry's postings sum to zero (PostgreSQL re-checks it at commit with a deferred trigger);
- a user's available or held balance never goes below zero (checked here and by a CHECK constraint);
- an idempotency key posts at most one entry: replaying it returns the first one.
"""

import json
from dataclasses import dataclass

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.db.models import F
from django.utils import timezone

from offerhub.correlation import correlation_id_get
from offerhub.services import atomic_joined, outbox_save
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


def ledger_account(*, kind: str, user=None, reference: str = "", likely_new: bool = False) -> LedgerAccount:
    """The account for (kind, user, reference), created on first use. `likely_new`: the caller
    expects to create it (an escrow's, at its funding): the INSERT is tried first, one statement
    then (two when it existed after all)."""
    code = ledger_account_code(kind=kind, user=user, reference=reference)
    if likely_new:
        return _account_create(code=code, kind=kind, user=user, reference=reference)
    account = LedgerAccount.objects.filter(code=code).first()
    return account if account is not None else _account_create(code=code, kind=kind, user=user, reference=reference)


def _account_create(*, code: str, kind: str, user, reference: str) -> LedgerAccount:
    """Create the account, or find the one created concurrently: one INSERT … ON CONFLICT, no
    savepoint (a plain create needs one to survive the IntegrityError)."""
    account = LedgerAccount(code=code, kind=kind, user=user, reference=reference, updated_at=timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {LedgerAccount._meta.db_table} (code, kind, user_id, reference, balance, updated_at)"  # noqa: S608 (the model's table)
            " VALUES (%s, %s, %s, %s, 0, %s) ON CONFLICT (code) DO NOTHING RETURNING id",
            [code, kind, user.pk if user is not None else None, reference, account.updated_at],
        )
        row = cursor.fetchone()
    if row is None:  # created concurrently
        return LedgerAccount.objects.get(code=code)
    account.pk = row[0]
    account._state.adding = False
    return account


def ledger_lock(accounts) -> dict[int, LedgerAccount]:
    """Lock accounts in primary-key order (the one order every writer uses, so no deadlock)
    and return them fresh. Evaluated as a list: `exists()` or `first()` would drop the
    ORDER BY and lock an arbitrary row first."""
    pks = sorted({account.pk for account in accounts})
    return {row.pk: row for row in LedgerAccount.objects.select_for_update().filter(pk__in=pks).order_by("pk")}


def _user_account_codes(user) -> list[str]:
    return [ledger_account_code(kind=kind, user=user) for kind in (Kind.USER_AVAILABLE, Kind.USER_HELD)]


def user_accounts(user) -> tuple[LedgerAccount, LedgerAccount]:
    """The member's available and held accounts: one query once both exist (every balance read)."""
    kinds = (Kind.USER_AVAILABLE, Kind.USER_HELD)
    codes = _user_account_codes(user)
    found = {account.code: account for account in LedgerAccount.objects.filter(code__in=codes)}
    available, held = (
        found.get(code) or ledger_account(kind=kind, user=user) for code, kind in zip(codes, kinds, strict=True)
    )
    return available, held


def user_accounts_locked(user) -> tuple[LedgerAccount, LedgerAccount]:
    """The member's available and held accounts, locked in primary-key order and fresh: one
    query (found and locked together) once both exist."""
    codes = _user_account_codes(user)
    found = {
        account.code: account
        for account in LedgerAccount.objects.select_for_update().filter(code__in=codes).order_by("pk")
    }
    if len(found) < len(codes):  # first use: create them, then lock both in order
        locked = ledger_lock(user_accounts(user))
        found = {account.code: account for account in locked.values()}
    available, held = (found[code] for code in codes)
    return available, held


@atomic_joined
def ledger_post(
    *,
    idempotency_key: str,
    kind: str,
    lines: list[tuple[LedgerAccount, int]],
    description: str = "",
    metadata: dict | None = None,
    locked: dict[int, LedgerAccount] | None = None,
) -> JournalEntry:
    """Post one balanced entry. `lines` are (account, signed stroops); positive credits.
    `locked`: accounts the caller already holds locked (fresh rows of this transaction), so
    they are not locked and read again; the others of `lines` are.

    Replaying an idempotency key returns the first entry with `replayed` set. The accounts'
    new balances are set on the objects of `lines` and `locked` too (no read-back needed)."""
    if not lines or sum(amount for _, amount in lines) != 0 or any(amount == 0 for _, amount in lines):
        raise LedgerError("an entry needs non-zero postings that sum to zero")

    deltas: dict[int, int] = {}
    for account, amount in lines:
        deltas[account.pk] = deltas.get(account.pk, 0) + amount
    locked = dict(locked or {})
    missing = [account for account, _ in lines if account.pk not in locked]
    if missing:
        locked |= ledger_lock(missing)
    for pk, delta in deltas.items():
        account = locked[pk]
        if not account.may_go_negative and account.balance + delta < 0:
            existing = _entry_replayed(idempotency_key)  # the first posting may have spent it
            if existing is not None:
                return existing
            raise InsufficientFunds(account=account, requested=-delta, available=account.balance)

    now = timezone.now()
    entry = _entry_new(idempotency_key=idempotency_key, kind=kind, description=description, metadata=metadata)
    if connection.vendor == "postgresql":
        balances = _entry_write(entry, lines=[(account.pk, amount) for account, amount in lines], now=now)
    else:
        balances = _entry_write_portably(entry, lines=lines, deltas=deltas, now=now)
    if balances is None:  # the same key committed before (or meanwhile): nothing moved
        return _entry_replayed(idempotency_key)
    for pk, delta in deltas.items():
        if delta:
            account = locked[pk]
            # What the locked row now holds, as the database returned it: a caller's stale copy
            # (it should never pass one) cannot carry a wrong balance into audit rows and events.
            account.balance = balances.get(pk, account.balance + delta)
            account.updated_at = now
    for account, _ in lines:
        if account is not locked[account.pk]:
            account.balance, account.updated_at = locked[account.pk].balance, locked[account.pk].updated_at
    return entry


def _entry_new(*, idempotency_key: str, kind: str, description: str, metadata: dict | None) -> JournalEntry:
    return JournalEntry(
        idempotency_key=idempotency_key,
        kind=kind,
        description=description[:255],
        correlation_id=correlation_id_get() or "",
        metadata=metadata or {},
        created_at=timezone.now(),
    )


_ENTRY_WRITE = """
WITH entry AS (
    INSERT INTO {entries} (idempotency_key, kind, description, correlation_id, metadata, created_at)
    VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id
), lines (n, account_id, amount) AS (VALUES {lines}),
posted AS (
    INSERT INTO {postings} (entry_id, account_id, amount, created_at)
    SELECT entry.id, lines.account_id, lines.amount, %s FROM entry, lines ORDER BY lines.n
), moved AS (
    UPDATE {accounts} account SET balance = account.balance + delta.amount, updated_at = %s
    FROM (SELECT account_id, SUM(amount) AS amount FROM lines GROUP BY account_id) delta
    WHERE account.id = delta.account_id AND delta.amount <> 0 AND EXISTS (SELECT 1 FROM entry)
    RETURNING account.id, account.balance
)
SELECT entry.id, moved.id, moved.balance FROM entry LEFT JOIN moved ON true
"""


def _entry_write(entry: JournalEntry, *, lines: list[tuple[int, int]], now) -> dict[int, int] | None:
    """The entry, its postings and the accounts' balances in one statement (PostgreSQL's
    data-modifying WITH); nothing when the idempotency key exists (None). Returns the moved
    accounts' new balances as the rows hold them. The accounts are locked by the caller; the
    deferred trigger still checks at commit that the postings sum to zero, and the balance CHECK
    constraint each row."""
    sql = _ENTRY_WRITE.format(
        entries=JournalEntry._meta.db_table,
        postings=Posting._meta.db_table,
        accounts=LedgerAccount._meta.db_table,
        lines=", ".join(["(%s::int, %s::bigint, %s::bigint)"] * len(lines)),
    )
    params = _entry_values(entry)
    for n, (account_pk, amount) in enumerate(lines):
        params += [n, account_pk, amount]
    params += [now, now]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not rows:
        return None
    entry.pk, entry._state.adding, entry.replayed = rows[0][0], False, False
    return {account_pk: balance for _, account_pk, balance in rows if account_pk is not None}


def _entry_write_portably(entry: JournalEntry, *, lines, deltas: dict, now) -> dict[int, int] | None:
    """SQLite (`make run` only): the entry with ON CONFLICT, then its postings, then the balances
    (relative updates); None when the key exists. Returns no balances: the caller adds the deltas."""
    if not _entry_insert(entry):
        return None
    Posting.objects.bulk_create(Posting(entry=entry, account_id=account.pk, amount=amount) for account, amount in lines)
    for pk, delta in deltas.items():
        if delta:  # relative, as on PostgreSQL: a stale `locked` object cannot lose an update
            LedgerAccount.objects.filter(pk=pk).update(balance=F("balance") + delta, updated_at=now)
    return {}


def _entry_values(entry: JournalEntry) -> list:
    """The entry's column values, in the order both INSERTs name them."""
    return [
        entry.idempotency_key,
        entry.kind,
        entry.description,
        entry.correlation_id,
        json.dumps(entry.metadata, cls=DjangoJSONEncoder),
        entry.created_at,
    ]


def _entry_replayed(idempotency_key: str) -> JournalEntry | None:
    existing = JournalEntry.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        existing.replayed = True
    return existing


def _entry_insert(entry: JournalEntry) -> bool:
    """Insert `entry`, or nothing when its key exists (False): one INSERT … ON CONFLICT DO
    NOTHING (a plain create would need a savepoint to survive the IntegrityError)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {JournalEntry._meta.db_table}"  # noqa: S608 (the model's table)
            " (idempotency_key, kind, description, correlation_id, metadata, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
            _entry_values(entry),
        )
        row = cursor.fetchone()
    if row is None:
        return False
    entry.pk, entry._state.adding, entry.replayed = row[0], False, False
    return True


def ledger_transfer(
    *, idempotency_key: str, kind: str, source: LedgerAccount, destination: LedgerAccount, amount: int, **extra
) -> JournalEntry:
    if amount <= 0:
        raise LedgerError("a transfer moves a positive amount")
    return ledger_post(
        idempotency_key=idempotency_key, kind=kind, lines=[(source, -amount), (destination, amount)], **extra
    )


@atomic_joined
def hold_reserve(
    *,
    user,
    reference: str,
    amount: int,
    owner: str = Hold.Owner.BALANCE,
    idempotency_key: str | None = None,
    accounts: tuple[LedgerAccount, LedgerAccount] | None = None,
) -> Hold:
    """available → held, under the lock of the user's accounts. `owner` is who may void or
    move the hold later (see `Hold.Owner`). `accounts`: the user's (available, held) accounts
    when the caller already holds them locked (`user_accounts_locked`)."""
    if amount <= 0:
        raise LedgerError("a hold reserves a positive amount")
    if idempotency_key is not None and JournalEntry.objects.filter(idempotency_key=idempotency_key).exists():
        # checked before anything is written: a replayed key would leave an active hold holding nothing
        raise LedgerError(f"entry {idempotency_key} already exists: not reserving {reference}")
    available, held = accounts or user_accounts_locked(user)  # serialises holds of this user
    if available.balance < amount:  # checked before anything is written: nothing to undo
        if Hold.objects.filter(user=user, reference=reference, status=Hold.Status.ACTIVE).exists():
            raise HoldConflict(reference)
        raise InsufficientFunds(account=available, requested=amount, available=available.balance)
    hold = _hold_insert(user=user, reference=reference, amount=amount, owner=owner)
    if hold is None:
        raise HoldConflict(reference)
    ledger_transfer(
        idempotency_key=idempotency_key or f"hold:{hold.pk}:reserve",
        kind="hold_reserve",
        source=available,
        destination=held,
        amount=amount,
        metadata={"reference": reference, "hold": hold.pk},
        locked={available.pk: available, held.pk: held},
    )
    return hold


def _hold_insert(*, user, reference: str, amount: int, owner: str) -> Hold | None:
    """The new active hold, or None when one is active for this reference already: one INSERT …
    ON CONFLICT on the one-active-hold-per-reference index (no EXISTS first, no savepoint)."""
    now = timezone.now()
    hold = Hold(
        user=user, reference=reference, amount=amount, remaining=amount, owner=owner, created_at=now, updated_at=now
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Hold._meta.db_table}"  # noqa: S608 (the model's table)
            " (user_id, reference, owner, amount, remaining, status, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (user_id, reference) WHERE status = 'ACTIVE' DO NOTHING RETURNING id",
            [user.pk, reference, owner, amount, amount, hold.status, now, now],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    hold.pk, hold._state.adding = row[0], False
    return hold


def _locked_active_hold(
    *, user, reference: str, owner: str | None = None, accounts: tuple[LedgerAccount, LedgerAccount] | None = None
) -> tuple[Hold, tuple[LedgerAccount, LedgerAccount]]:
    """The active hold, locked, and the user's (available, held) accounts, locked (`accounts`:
    the caller holds them locked already); with `owner`, only if it is that owner's (else HoldOwned)."""
    # Accounts first, then the hold: the order hold_reserve and the balance services use.
    accounts = accounts or user_accounts_locked(user)
    hold = Hold.objects.select_for_update().filter(user=user, reference=reference, status=Hold.Status.ACTIVE).first()
    if hold is None:
        raise HoldNotFound(reference)
    if owner is not None and hold.owner != owner:
        raise HoldOwned(hold)
    return hold, accounts


@atomic_joined
def hold_void(*, user, reference: str, amount: int | None = None, owner: str | None = None) -> Hold:
    """held → available, for all of the hold or part of it. With `owner`, only that owner's hold."""
    hold, (available, held) = _locked_active_hold(user=user, reference=reference, owner=owner)
    amount = hold.remaining if amount is None else amount
    if amount <= 0 or amount > hold.remaining:
        raise HoldAmountMismatch(f"{amount} is not within the {hold.remaining} held")
    step = hold.amount - hold.remaining
    ledger_transfer(
        idempotency_key=f"hold:{hold.pk}:void:{step}",
        kind="hold_void",
        source=held,
        destination=available,
        amount=amount,
        metadata={"reference": reference, "hold": hold.pk},
        locked={available.pk: available, held.pk: held},
    )
    _consume(hold, amount, Hold.Status.VOIDED)
    return hold


@atomic_joined
def hold_post(
    *,
    user,
    reference: str,
    destination: LedgerAccount,
    kind: str,
    amount: int | None = None,
    idempotency_key: str | None = None,
    accounts: tuple[LedgerAccount, LedgerAccount] | None = None,
) -> Hold:
    """held → destination (escrow, external, fees, another user), for all of the hold or part of it.
    `accounts`: the user's (available, held) accounts when the caller already holds them locked
    (`user_accounts_locked`); their new balances are set on them."""
    hold, (available, held) = _locked_active_hold(user=user, reference=reference, accounts=accounts)
    amount = hold.remaining if amount is None else amount
    if amount <= 0 or amount > hold.remaining:
        raise HoldAmountMismatch(f"{amount} is not within the {hold.remaining} held")
    step = hold.amount - hold.remaining
    entry = ledger_transfer(
        idempotency_key=idempotency_key or f"hold:{hold.pk}:post:{step}",
        kind=kind,
        source=held,
        destination=destination,
        amount=amount,
        metadata={"reference": reference, "hold": hold.pk},
        locked={available.pk: available, held.pk: held},
    )
    if entry.replayed:  # that key already moved other money: posting nothing must not consume the hold
        raise LedgerError(f"entry {entry.idempotency_key} already exists; hold {hold.pk} not posted")
    _consume(hold, amount, Hold.Status.POSTED)
    return hold


def _consume(hold: Hold, amount: int, final_status: str) -> None:
    """Take `amount` off the locked hold; written with the audit rows and events when an
    `outbox_batched()` block is open (outbox_save: its last write of the hold), else at once."""
    hold.remaining -= amount
    if hold.remaining == 0:
        hold.status = final_status
    outbox_save(hold, ("remaining", "status", "updated_at"))


@atomic_joined
def hold_split(
    *, user, reference: str, amount: int, new_reference: str, owner: str | None = None, new_owner: str
) -> Hold:
    """Move part of a hold into a hold of its own (both stay in `held`, so no entry): a
    payment in flight then owns its money, and the rest of the hold cannot pay it twice.
    With `owner`, only that owner's hold is split."""
    hold, _ = _locked_active_hold(user=user, reference=reference, owner=owner)
    if amount <= 0 or amount > hold.remaining:
        raise HoldAmountMismatch(f"{amount} is not within the {hold.remaining} held")
    _consume(hold, amount, Hold.Status.POSTED)
    return Hold.objects.create(user=user, reference=new_reference, amount=amount, remaining=amount, owner=new_owner)
