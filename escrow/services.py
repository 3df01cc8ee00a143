"""Escrow services: open an order's escrow and queue the contract calls that move it.

Each public function checks our side (state, wallets, amounts), records the calls it
needs as `EscrowStep` rows in the caller's transaction and starts the step runner after
commit. The runner (`escrow.runner`) signs and submits them in order; when the chain
confirms a step, `step_settle` updates the record and posts the ledger entry in one
transaction, so the ledger follows the contract to the stroop.

Who signs, by default (DESIGN.md): the buyer approves, funds and may dispute; the seller
is service provider and receiver; the platform deploys, releases and resolves (one of its
signer accounts, picked per escrow), and its treasury account receives the platform fee.
"""

import copy
import random
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, Subquery
from django.dispatch import Signal
from django.utils import timezone

from escrow.models import Escrow, EscrowMilestone, EscrowStep
from offerhub.errors import ServiceError
from offerhub.money import STROOPS_PER_UNIT, money_from_stroops
from offerhub.services import (
    atomic_joined,
    audit_record,
    event_publish,
    outbox_batched,
    outbox_row_update,
    outbox_save,
)
from offerhub.timefmt import iso_timestamp
from payments.ledger import (
    HoldNotFound,
    hold_post,
    ledger_account,
    ledger_account_code,
    ledger_post,
    ledger_transfer,
    user_accounts_locked,
)
from payments.models import Hold, LedgerAccount, Wallet
from payments.wallets import platform_escrow_signer_pick

Kind = LedgerAccount.Kind
Action = EscrowStep.Action
TRUSTLESS_WORK_FEE_BPS = 30  # 0.3 %, charged by the contract on every payout
MAX_MILESTONES = 50
# How long a queued drive keeps its escrow's steps from the resume sweeper: longer than a
# task waits for a worker, short enough that one lost with its worker is queued again soon.
DRIVE_CLAIM = timedelta(minutes=2)

# Sent inside the settling transaction, so a listener's writes (an order's state) commit with it.
step_settled = Signal()  # kwargs: step, escrow
step_failed = Signal()  # kwargs: step, escrow


@dataclass(frozen=True)
class Fees:
    trustless_work: int
    platform: int
    net: int


def escrow_fees(*, amount: int, platform_fee_percent: Decimal) -> Fees:
    """What the contract takes from a payout of `amount` stroops: each fee rounded down
    to the stroop, the receiver gets the rest (PROVIDERS.md §Contract rules)."""
    trustless_work = amount * TRUSTLESS_WORK_FEE_BPS // 10_000
    platform = int(Decimal(amount) * platform_fee_percent / 100)
    return Fees(trustless_work, platform, amount - trustless_work - platform)


def units(stroops: int) -> Decimal:
    """Stroops as the token units Trustless Work's JSON numbers carry."""
    return Decimal(stroops) / STROOPS_PER_UNIT


def _active_wallets(buyer, seller) -> tuple[Wallet, Wallet]:
    """The buyer's and the seller's active wallets (each user's first), in one query."""
    found: dict[int, Wallet] = {}
    for wallet in Wallet.objects.filter(user__in=(buyer, seller), status=Wallet.Status.ACTIVE).order_by("pk"):
        found.setdefault(wallet.user_id, wallet)
    for user, whose in ((buyer, "buyer"), (seller, "seller")):
        if user.pk not in found:
            raise ServiceError("ESCROW_NOT_READY", f"the {whose}'s wallet is not ready yet; try again in a minute")
    return found[buyer.pk], found[seller.pk]


class _LockMark:
    """The on_commit hook that marks an escrow as read locked in this transaction: it does
    nothing. Django drops it after the commit and with a savepoint rolled back (whose row locks
    PostgreSQL releases too), so a mark found among the hooks is a lock still held."""

    def __call__(self) -> None:
        pass


def _locked(escrow: Escrow) -> Escrow:
    """The escrow locked and fresh; as it is when escrow_locked_for() read it in this transaction."""
    mark = getattr(escrow, "_lock_mark", None)
    if mark is not None and any(func is mark for _, func, _ in transaction.get_connection().run_on_commit):
        return escrow
    # Its buyer read along (audit rows and events name them), not locked.
    return Escrow.objects.select_for_update(of=("self",)).select_related("buyer").get(pk=escrow.pk)


def escrow_locked_for(*, engagement_id: str) -> Escrow | None:
    """The engagement's escrow, locked and fresh (its buyer read along), or None. The escrow
    services given it in this transaction neither lock nor read it again (one query for both
    the caller's look and theirs). The caller must change it only through them."""
    escrow = (
        Escrow.objects.select_for_update(of=("self",))
        .select_related("buyer")
        .filter(engagement_id=engagement_id)
        .first()
    )
    if escrow is not None and transaction.get_connection().in_atomic_block:
        escrow._lock_mark = _LockMark()
        transaction.on_commit(escrow._lock_mark)
    return escrow


def _step_add(escrow: Escrow, *, action: str, stem: str, signer: str, index=None, params=None, actor=None):
    """Queue the call `stem` names (e.g. "approve:0"): the open attempt if there is one (see _attempt).

    A new step is inserted already claimed for the drive queued after commit (its
    next_attempt_at), so the resume sweeper leaves the escrow alone meanwhile: it skips an
    escrow with any open step not due."""
    from escrow.tasks import DRIVE_QUEUED_FOR

    actor_type, actor_id = actor or ("SYSTEM", "escrow")
    step = EscrowStep(
        escrow=escrow,
        action=action,
        milestone_index=index,
        params=params or {},
        signer=signer,
        actor_type=actor_type,
        actor_id=actor_id,
        next_attempt_at=timezone.now() + DRIVE_QUEUED_FOR,
    )
    stem = f"{escrow.public_id}:{stem}"
    if connection.vendor != "postgresql" or not _step_queue(step, stem):
        # An attempt is open or confirmed, or a concurrent call inserted the key first.
        current, step.key = _attempt(escrow, action, stem)
        if current is not None:
            step = current
        elif not _step_insert(step):
            step = EscrowStep.objects.get(key=step.key)  # committed by a concurrent call: that one is it
    _drive_on_commit(escrow.pk)
    return step


def _step_columns() -> list:
    return [field for field in EscrowStep._meta.concrete_fields if not field.primary_key]


_STEP_QUEUE = """
WITH family AS (
    SELECT status FROM {table} WHERE escrow_id = %s AND action = %s AND (key = %s OR substr(key, 1, %s) = %s)
)
INSERT INTO {table} ({columns})
SELECT {values} WHERE NOT EXISTS (SELECT 1 FROM family WHERE status <> %s)
ON CONFLICT (key) DO NOTHING RETURNING id, key
"""


def _step_queue(step: EscrowStep, stem: str) -> bool:
    """The common case in one statement (PostgreSQL): insert `step` unless an attempt of the
    call is open or confirmed, keyed `stem`, or `stem:<n>` after n failed attempts (what
    _attempt decides in two reads). False, nothing written, when it did not insert."""
    fields = _step_columns()
    values, params = [], []
    for field in fields:
        if field.name == "key":
            tried = "(SELECT COUNT(*) FROM family)"
            values.append(f"CASE WHEN {tried} = 0 THEN %s ELSE %s || ':' || {tried} END")
            params += [stem, stem]
        else:
            values.append(f"%s::{field.cast_db_type(connection)}")
            params.append(field.get_db_prep_save(field.pre_save(step, add=True), connection))
    sql = _STEP_QUEUE.format(
        table=EscrowStep._meta.db_table,
        columns=", ".join(connection.ops.quote_name(field.column) for field in fields),
        values=", ".join(values),
    )
    prefix = f"{stem}:"
    family = [step.escrow_id, step.action, stem, len(prefix), prefix]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*family, *params, EscrowStep.Status.FAILED])
        row = cursor.fetchone()
    if row is None:
        return False
    step.pk, step.key, step._state.adding = row[0], row[1], False
    return True


def _step_insert(step: EscrowStep) -> bool:
    """Insert `step`, or nothing when its key exists (False)."""
    fields = _step_columns()
    values = [field.get_db_prep_save(field.pre_save(step, add=True), connection) for field in fields]
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {EscrowStep._meta.db_table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"  # noqa: S608 (the model's table)
            " ON CONFLICT (key) DO NOTHING RETURNING id",
            values,
        )
        row = cursor.fetchone()
    if row is None:
        return False
    step.pk, step._state.adding = row[0], False
    return True


def escrow_drive_later(escrow: Escrow) -> None:
    """Drive the escrow's open steps after commit. They are claimed for DRIVE_QUEUED_FOR, so
    the resume sweeper does not queue a second drive while this one waits in a backlog for a
    worker (the drive cuts the claim back when it starts; a lost task is picked up after it)."""
    from escrow.tasks import DRIVE_QUEUED_FOR

    now = timezone.now()
    escrow.steps.filter(status__in=EscrowStep.OPEN).exclude(next_attempt_at__gt=now).update(
        next_attempt_at=now + DRIVE_QUEUED_FOR
    )
    _drive_on_commit(escrow.pk)


class _EscrowDrive:
    """The on_commit hook that queues one escrow's drive."""

    def __init__(self, escrow_pk: int):
        self.escrow_pk = escrow_pk

    def __call__(self) -> None:
        from escrow.tasks import escrow_drive_task

        escrow_drive_task.delay(self.escrow_pk)


def _drive_on_commit(escrow_pk: int) -> None:
    """One drive per escrow per transaction, however many steps it queued (a rolled-back
    savepoint drops its hook, and a later call registers again): the drive runs them all."""
    conn = transaction.get_connection()
    if conn.in_atomic_block and any(
        isinstance(func, _EscrowDrive) and func.escrow_pk == escrow_pk for _, func, _ in conn.run_on_commit
    ):
        return
    # robust: a broker outage must not undo the request; the resume sweeper picks the steps up.
    transaction.on_commit(_EscrowDrive(escrow_pk), robust=True)


def _attempt(escrow: Escrow, action: str, stem: str) -> tuple[EscrowStep | None, str]:
    """The call's step if an attempt is still open or confirmed (asking twice changes nothing),
    else None and a fresh key after failed attempts (a refused call may be asked for again).
    One read of the call's attempts."""
    family = list(escrow.steps.filter(action=action).filter(Q(key=stem) | Q(key__startswith=f"{stem}:")).order_by("pk"))
    current = next((step for step in reversed(family) if step.status != EscrowStep.Status.FAILED), None)
    if current is not None:
        return current, current.key
    return None, stem if not family else f"{stem}:{len(family)}"


def _audit(escrow: Escrow, action: str, actor, **after) -> None:
    actor_type, actor_id = actor or ("SYSTEM", "escrow")
    audit_record(
        action=action,
        resource_type="Escrow",
        resource_id=escrow.public_id,
        actor_type=actor_type,
        actor_id=actor_id,
        payload_after={"status": escrow.status, "engagementId": escrow.engagement_id, **after},
        user_id=escrow.buyer.public_id,
        marketplace_id=escrow.buyer.marketplace_id,
    )


# --- Opening ----------------------------------------------------------------------------


@atomic_joined  # checks first, then writes
def escrow_open(
    *,
    engagement_id: str,
    buyer,
    seller,
    amount: int,
    title: str,
    hold_reference: str,
    description: str = "",
    milestones: list[dict] | None = None,
    actor=None,
) -> Escrow:
    """The order's escrow, deployed in the background. Calling again for the same order
    resumes the same record (never a second contract) until the deploy is confirmed.

    `milestones`: `[{ref, title, amount (stroops)}]`; with them the escrow is multi-release
    and pays each milestone on its own; without, single-release."""
    existing = Escrow.objects.select_for_update().filter(engagement_id=engagement_id).first()
    if existing is not None:
        if existing.status != Escrow.Status.CREATING:
            raise ServiceError("ESCROW_ALREADY_EXISTS", f"the escrow of {engagement_id} is already deployed")
        if not existing.steps.filter(action=Action.DEPLOY).exclude(status=EscrowStep.Status.FAILED).exists():
            _deploy_step(existing, actor)  # the last deploy was refused: try again, same record
        escrow_drive_later(existing)
        return existing
    buyer_wallet, seller_wallet = _active_wallets(buyer, seller)
    milestones = milestones or []
    if len(milestones) > MAX_MILESTONES:
        raise ServiceError("INVALID_REQUEST", f"an escrow has at most {MAX_MILESTONES} milestones", field="milestones")
    if amount <= 0:
        raise ServiceError("INVALID_AMOUNT", "the amount must be greater than zero", field="amount")
    if milestones and sum(m["amount"] for m in milestones) != amount:
        raise ServiceError("INVALID_AMOUNT", "milestone amounts must add up to the amount", field="milestones")
    # The treasury receives the fee; one of the platform's signers deploys, releases and resolves.
    treasury, signer = platform_escrow_signer_pick()
    roles = {
        "approver": buyer_wallet.public_key,
        "serviceProvider": seller_wallet.public_key,
        "platformAddress": treasury,
        "releaseSigner": signer,
        "disputeResolver": signer,
    }
    if not milestones:
        roles["receiver"] = seller_wallet.public_key
    escrow = Escrow.objects.create(
        engagement_id=engagement_id,
        type=Escrow.Type.MULTI if milestones else Escrow.Type.SINGLE,
        title=title[:100],
        description=description[:500],
        buyer=buyer,
        seller=seller,
        hold_reference=hold_reference,
        roles=roles,
        amount=amount,
        platform_fee_percent=settings.OFFERHUB_PLATFORM_FEE_PERCENT,
    )
    EscrowMilestone.objects.bulk_create(
        EscrowMilestone(escrow=escrow, index=index, ref=m["ref"], title=m["title"][:500], amount=m["amount"])
        for index, m in enumerate(milestones or [{"ref": "delivery", "title": title, "amount": amount}])
    )
    _deploy_step(escrow, actor)
    _audit(escrow, "escrow.creating", actor, amount=money_from_stroops(amount), type=escrow.type)
    return escrow


def escrow_deployer(escrow: Escrow) -> str:
    """Who deploys the escrow: its platform signer (the release signer; the treasury, which is
    the platform address, for escrows created before the signer pool)."""
    return escrow.roles["releaseSigner"]


def _deploy_step(escrow: Escrow, actor) -> EscrowStep:
    return _step_add(escrow, action=Action.DEPLOY, stem="deploy", signer=escrow_deployer(escrow), actor=actor)


# --- Calls on a deployed escrow ---------------------------------------------------------


@atomic_joined  # checks first, then writes
def escrow_fund(*, escrow: Escrow, actor=None) -> Escrow:
    """Move the buyer's held money into the contract. A failed attempt leaves the hold
    intact and the escrow CREATED, so funding can be asked for again."""
    escrow = _locked(escrow)
    if escrow.status == Escrow.Status.FUNDING:
        escrow_drive_later(escrow)
        return escrow
    if escrow.status != Escrow.Status.CREATED:
        if escrow.funded_at is not None:
            raise ServiceError("ESCROW_ALREADY_FUNDED", "the escrow is already funded")
        raise ServiceError("ESCROW_NOT_READY", f"the escrow is {escrow.status}, not CREATED")
    escrow.start_funding()
    outbox_save(escrow)  # with the transaction's audit rows and events (at once outside a batch)
    _step_add(
        escrow,
        action=Action.FUND,
        stem="fund",
        signer=escrow.roles["approver"],
        params={"amount": str(escrow.amount)},
        actor=actor,
    )
    return escrow


def escrow_funding_refusal(*, escrow: Escrow, amount: int) -> tuple[str, str] | None:
    """Why the buyer's hold cannot pay `amount` into the escrow, as (code, message), or None.
    The runner asks before it signs a fund call: a funding the ledger cannot post from the
    hold (voided, spent on another hold, smaller) must never reach the chain.

    Read without a lock on purpose: a lock would be held across the Trustless Work calls, and
    nothing can change the hold meanwhile. It is the order's (Hold.Owner.ORDER): the balance
    endpoints refuse it, and only order_cancel voids it, which the order's state machine
    refuses from ESCROW_CREATING on. A new way to void an order's hold must keep that true."""
    hold = Hold.objects.filter(user_id=escrow.buyer_id, reference=escrow.hold_reference, status=Hold.Status.ACTIVE)
    hold = hold.first()
    if hold is None:
        return "RESERVE_NOT_FOUND", f"the buyer holds no money for {escrow.hold_reference}: nothing was signed"
    if hold.remaining != amount:
        return (
            "RESERVE_MISMATCH_AMOUNT",
            f"the buyer holds {money_from_stroops(hold.remaining)} for {escrow.hold_reference}, "
            f"not the {money_from_stroops(amount)} to fund: nothing was signed",
        )
    return None


# Calls that pay money out of the escrow (an approval leads to one).
PAYOUT_ACTIONS = (Action.APPROVE, Action.RELEASE, Action.RELEASE_MILESTONE, Action.RESOLVE, Action.RESOLVE_MILESTONE)


def _funded(escrow: Escrow) -> None:
    if escrow.status != Escrow.Status.FUNDED:
        raise ServiceError("ESCROW_INVALID_STATE", f"the escrow is {escrow.status}, not FUNDED")


def _working(escrow: Escrow) -> None:
    """Funded, or frozen by a dispute that was withdrawn: the work goes on either way."""
    if escrow.status not in (Escrow.Status.FUNDED, Escrow.Status.DISPUTED):
        raise ServiceError("ESCROW_INVALID_STATE", f"the escrow is {escrow.status}, not FUNDED")


def _dispute_flagged(escrow: Escrow, milestone: EscrowMilestone | None = None) -> bool:
    """Whether the contract's dispute flag is set, or being set, on the escrow (single-release)
    or the milestone (multi-release). Trustless Work v1 cannot clear it: once a dispute was
    opened, even if withdrawn, only the dispute resolver (the platform) can pay that money out."""
    calls = _dispute_calls(escrow.steps.all())
    if milestone is None or not escrow.is_multi:
        if escrow.status == Escrow.Status.DISPUTED or escrow.flags.get("disputed"):
            return True
        called = getattr(milestone, "escrow_dispute_called", None)  # read with the milestone
        return called if called is not None else calls.exists()
    called = getattr(milestone, "dispute_called", None)
    return milestone.disputed or (
        called if called is not None else calls.filter(milestone_index=milestone.index).exists()
    )


def _dispute_calls(steps):
    """The dispute calls (escrow or milestone) among `steps` not refused."""
    return steps.filter(action__in=(Action.DISPUTE, Action.DISPUTE_MILESTONE)).exclude(status=EscrowStep.Status.FAILED)


def _with_dispute_calls(milestones):
    """The milestones, each with whether a dispute call of its escrow (escrow_dispute_called) and
    of itself (dispute_called) is on its way or done: what _dispute_flagged asks, in their read."""
    calls = _dispute_calls(EscrowStep.objects.filter(escrow_id=OuterRef("escrow_id")))
    return milestones.annotate(
        escrow_dispute_called=Exists(calls), dispute_called=Exists(calls.filter(milestone_index=OuterRef("index")))
    )


def _milestone(escrow: Escrow, index: int, *, status_calls: bool = False) -> EscrowMilestone:
    """The escrow's milestone `index`; `status_calls`: with how many milestone-status calls the
    escrow has (status_calls, read along: a mark's key counts them)."""
    milestones = escrow.milestones.filter(index=index)
    if status_calls:
        calls = EscrowStep.objects.filter(escrow_id=OuterRef("escrow_id"), action=Action.MILESTONE_STATUS)
        milestones = milestones.annotate(
            status_calls=Subquery(calls.values("escrow_id").annotate(n=Count("pk")).values("n")[:1])
        )
    milestone = milestones.first()
    if milestone is None:
        raise ServiceError("MILESTONE_NOT_FOUND", f"the escrow has no milestone {index}", field="milestoneIndex")
    return milestone


@atomic_joined  # checks first, then writes
def escrow_milestone_mark(
    *, escrow: Escrow, index: int, status: str = "completed", evidence: str = "", actor=None
) -> EscrowStep:
    """The seller (service provider) records progress and evidence on the contract."""
    escrow = _locked(escrow)
    _working(escrow)
    milestone = _milestone(escrow, index, status_calls=True)
    if milestone.released or milestone.resolved:
        raise ServiceError("ESCROW_INVALID_STATE", "that milestone is finished")
    # Every mark is a call of its own (progress, then completed, with new evidence).
    stem = f"status:{index}:{milestone.status_calls or 0}"
    return _step_add(
        escrow,
        action=Action.MILESTONE_STATUS,
        stem=stem,
        signer=escrow.roles["serviceProvider"],
        index=index,
        params={"status": status[:50], "evidence": evidence[:500]},
        actor=actor,
    )


def _approve_step(escrow: Escrow, milestone: EscrowMilestone, actor) -> None:
    if not milestone.approved:
        _step_add(
            escrow,
            action=Action.APPROVE,
            stem=f"approve:{milestone.index}",
            signer=escrow.roles["approver"],
            index=milestone.index,
            actor=actor,
        )


@atomic_joined  # checks first, then writes
def escrow_release(*, escrow: Escrow, index: int | None = None, actor=None) -> Escrow:
    """Pay the seller: the whole escrow, or (multi-release) one milestone. The buyer's
    approval of each milestone paid is signed first, as the contract requires. Money the
    contract holds under a dispute flag (a dispute opened, then withdrawn) is paid to the
    seller by the dispute resolver instead, the only call the contract then accepts."""
    escrow = _locked(escrow)
    _working(escrow)
    if index is not None and not escrow.is_multi:
        raise ServiceError("ESCROW_INVALID_STATE", "a single-release escrow is released as a whole")
    if index is not None:
        milestones = [_milestone(escrow, index)]
    else:
        milestones = list(_with_dispute_calls(escrow.milestones.all()))  # _dispute_flagged needs no read
    unpaid = [m for m in milestones if not (m.released or m.resolved)]
    if not unpaid:
        raise ServiceError("ESCROW_INVALID_STATE", "nothing is left to release")
    if index is None:
        escrow.start_release()
        outbox_save(escrow)  # with the transaction's audit rows and events (at once outside a batch)
    flagged = [m for m in unpaid if _dispute_flagged(escrow, m)]
    if flagged:
        _resolve_steps(escrow, sum(m.amount for m in flagged), 0, actor, only=flagged)
        unpaid = [m for m in unpaid if m not in flagged]
        if not unpaid:
            _audit(escrow, "escrow.release_requested", actor, milestoneIndex=index, byDisputeResolver=True)
            return escrow
    for milestone in unpaid:
        _approve_step(escrow, milestone, actor)
        if escrow.is_multi:
            _step_add(
                escrow,
                action=Action.RELEASE_MILESTONE,
                stem=f"release:{milestone.index}",
                signer=escrow.roles["releaseSigner"],
                index=milestone.index,
                actor=actor,
            )
    if not escrow.is_multi:
        _step_add(
            escrow,
            action=Action.RELEASE,
            stem="release",
            signer=escrow.roles["releaseSigner"],
            actor=actor,
        )
    _audit(escrow, "escrow.release_requested", actor, milestoneIndex=index)
    return escrow


def _dispute_steps(escrow: Escrow, signer: str, actor) -> None:
    if not escrow.is_multi:
        _step_add(escrow, action=Action.DISPUTE, stem="dispute", signer=signer, actor=actor)
        return
    for milestone in escrow.milestones.all():
        if not (milestone.released or milestone.resolved or milestone.disputed):
            _step_add(
                escrow,
                action=Action.DISPUTE_MILESTONE,
                stem=f"dispute:{milestone.index}",
                signer=signer,
                index=milestone.index,
                actor=actor,
            )


@transaction.atomic
def escrow_dispute(*, escrow: Escrow, opened_by: str, actor=None) -> Escrow:
    """Freeze the escrow on chain: signed by the buyer or the seller (`opened_by`)."""
    escrow = _locked(escrow)
    _working(escrow)  # already frozen by a withdrawn dispute: the contract's flag is still set
    paying = escrow.steps.filter(status__in=EscrowStep.OPEN, action__in=PAYOUT_ACTIONS)
    if paying.exists():
        # Frozen now, the money on its way would be disputed too: the chain would then refuse
        # either the payout or the dispute, and what is left could not be resolved.
        raise ServiceError(
            "ESCROW_NOT_READY",
            "a payment from this escrow is still being confirmed on chain: open the dispute once it is",
            details={"inFlight": sorted(set(paying.values_list("action", flat=True)))},
        )
    signer = escrow.roles["approver"] if opened_by == "buyer" else escrow.roles["serviceProvider"]
    _dispute_steps(escrow, signer, actor)
    _audit(escrow, "escrow.dispute_requested", actor, openedBy=opened_by)
    return escrow


@transaction.atomic
def escrow_resolve(
    *,
    escrow: Escrow,
    seller_amount: int,
    buyer_amount: int,
    seller_by_index: dict[int, int] | None = None,
    actor=None,
) -> Escrow:
    """Split a disputed escrow: the platform (dispute resolver) pays `seller_amount` to the
    seller and `buyer_amount` back to the buyer, each net of its pro-rata fees. Together
    they must be everything still in the escrow. A multi-release escrow may be split per
    milestone: `seller_by_index` gives each open milestone's share to the seller (the rest of
    each to the buyer), adding up to `seller_amount`."""
    escrow = _locked(escrow)
    if escrow.status not in (Escrow.Status.DISPUTED, Escrow.Status.REFUNDING):
        raise ServiceError("ESCROW_INVALID_STATE", f"the escrow is {escrow.status}, not DISPUTED")
    if seller_amount < 0 or buyer_amount < 0 or seller_amount + buyer_amount != _unpaid(escrow):
        raise ServiceError(
            "INVALID_AMOUNT",
            f"the amounts must add up to {money_from_stroops(_unpaid(escrow))}, what the escrow still holds",
            field="amount",
        )
    if seller_by_index is not None:
        escrow_split_check(escrow=escrow, seller_by_index=seller_by_index, seller_amount=seller_amount)
    if escrow.status == Escrow.Status.DISPUTED:
        if not buyer_amount:
            escrow.start_release()
        elif not seller_amount:
            escrow.start_refund()
        escrow.save()
    _resolve_steps(escrow, seller_amount, buyer_amount, actor, seller_by_index=seller_by_index)
    _audit(escrow, "escrow.resolution_requested", actor, seller=seller_amount, buyer=buyer_amount)
    return escrow


def escrow_resolution_payouts(*, escrow: Escrow, since=None) -> dict[str, tuple[int, int]]:
    """What the escrow's resolutions queued from `since` on pay (or are paying) each address:
    (gross, net) in stroops, the fees taken per distribution as the contract takes them (so per
    milestone when a multi-release escrow is split milestone by milestone)."""
    paid: dict[str, tuple[int, int]] = {}
    steps = escrow.steps.filter(action__in=(Action.RESOLVE, Action.RESOLVE_MILESTONE)).exclude(
        status=EscrowStep.Status.FAILED
    )
    if since is not None:
        steps = steps.filter(created_at__gte=since)
    for step in steps:
        for address, amount in step.params.get("distributions", []):
            gross, net = paid.get(address, (0, 0))
            fees = escrow_fees(amount=int(amount), platform_fee_percent=escrow.platform_fee_percent)
            paid[address] = (gross + int(amount), net + fees.net)
    return paid


def escrow_split_check(*, escrow: Escrow, seller_by_index: dict[int, int], seller_amount: int) -> None:
    """A per-milestone split names every open milestone of a multi-release escrow, gives the
    seller 0 to that milestone's amount of each, and adds up to the seller's share."""
    if not escrow.is_multi:
        raise ServiceError("INVALID_REQUEST", "a single-release escrow is split as a whole", field="milestones")
    open_milestones = {m.index: m for m in escrow.milestones.all() if not (m.released or m.resolved)}
    if set(seller_by_index) != set(open_milestones):
        raise ServiceError(
            "INVALID_REQUEST",
            "a per-milestone split names every milestone still in the escrow, once",
            field="milestones",
            details={"openMilestones": [m.ref for m in open_milestones.values()]},
        )
    for index, share in seller_by_index.items():
        milestone = open_milestones[index]
        if not 0 <= share <= milestone.amount:
            raise ServiceError(
                "INVALID_AMOUNT",
                f"milestone {milestone.ref!r} holds {money_from_stroops(milestone.amount)}: "
                "the seller's share is between 0 and that",
                field="milestones",
            )
    if sum(seller_by_index.values()) != seller_amount:
        raise ServiceError(
            "INVALID_AMOUNT", "the milestones' shares to the seller do not add up to releaseAmount", field="milestones"
        )


def _unpaid(escrow: Escrow) -> int:
    return sum(m.amount for m in escrow.milestones.all() if not (m.released or m.resolved))


def _resolve_steps(
    escrow: Escrow,
    seller_amount: int,
    buyer_amount: int,
    actor,
    *,
    only: list[EscrowMilestone] | None = None,
    seller_by_index: dict[int, int] | None = None,
) -> None:
    """One resolution (single-release) or one per open milestone (or per milestone of `only`):
    `seller_by_index` gives each milestone's share to the seller, else the seller's share
    fills the milestones in order and the buyer gets the rest."""
    seller, buyer = escrow.roles["serviceProvider"], escrow.roles["approver"]
    signer = escrow.roles["disputeResolver"]
    if not escrow.is_multi:
        shares = [(seller, seller_amount), (buyer, buyer_amount)]
        _step_add(
            escrow,
            action=Action.RESOLVE,
            stem="resolve",
            signer=signer,
            params={"distributions": [[address, str(amount)] for address, amount in shares if amount]},
            actor=actor,
        )
        return
    for milestone in only if only is not None else escrow.milestones.all():
        if milestone.released or milestone.resolved:
            continue
        if seller_by_index is not None:
            to_seller = seller_by_index[milestone.index]
        else:
            to_seller = min(seller_amount, milestone.amount)
            seller_amount -= to_seller
        shares = [(seller, to_seller), (buyer, milestone.amount - to_seller)]
        _step_add(
            escrow,
            action=Action.RESOLVE_MILESTONE,
            stem=f"resolve:{milestone.index}",
            signer=signer,
            index=milestone.index,
            params={"distributions": [[address, str(amount)] for address, amount in shares if amount]},
            actor=actor,
        )


@transaction.atomic
def escrow_refund(*, escrow: Escrow, actor=None) -> Escrow:
    """Everything still in the escrow back to the buyer. Trustless Work has no refund call:
    the seller's key opens a dispute and the platform resolves it in the buyer's favour."""
    escrow = _locked(escrow)
    if escrow.status == Escrow.Status.FUNDED:
        escrow.start_refund()
        escrow.save()
        _dispute_steps(escrow, escrow.roles["serviceProvider"], actor)
    elif escrow.status == Escrow.Status.DISPUTED:
        escrow.start_refund()
        escrow.save()
    else:
        raise ServiceError("ESCROW_INVALID_STATE", f"the escrow is {escrow.status}; only a funded escrow is refunded")
    _resolve_steps(escrow, 0, _unpaid(escrow), actor)
    _audit(escrow, "escrow.refund_requested", actor)
    return escrow


# --- Settling what the chain confirmed ----------------------------------------------------


def _escrow_event(escrow: Escrow, event_type: str, **payload) -> None:
    event_publish(
        type=event_type,
        aggregate_type="Order",
        aggregate_id=escrow.engagement_id,
        payload={"escrowId": escrow.public_id, "orderId": escrow.engagement_id, **payload},
        user_id=escrow.buyer.public_id,
        marketplace_id=escrow.buyer.marketplace_id,
    )


def _recipient_user(escrow: Escrow, address: str):
    """The member `address` belongs to: the escrow's buyer or seller by the roles their wallets
    were given at opening (a wallet's key is its user's for good), else looked up; None for an
    address outside OfferHub (the platform's, or external)."""
    for user, roles in ((escrow.seller, ("serviceProvider", "receiver")), (escrow.buyer, ("approver",))):
        if any(escrow.roles.get(role) == address for role in roles):
            return user
    wallet = Wallet.objects.filter(public_key=address).select_related("user").first()
    return wallet.user if wallet is not None else None


def _ledger_accounts(specs: list[dict]) -> tuple[list[LedgerAccount], dict[int, LedgerAccount]]:
    """`ledger_account(**spec)` of each spec, and those that existed locked (primary-key order,
    as ledger_lock takes them) and fresh, by pk: found and locked in one query, for ledger_post's
    `locked` (it locks the ones created here itself)."""
    codes = [ledger_account_code(**spec) for spec in specs]
    rows = LedgerAccount.objects.select_for_update().filter(code__in=set(codes)).order_by("pk")
    found = {account.code: account for account in rows}
    accounts = [found.get(code) or ledger_account(**spec) for code, spec in zip(codes, specs, strict=True)]
    return accounts, {account.pk: account for account in found.values()}


def _post_payouts(escrow: Escrow, step: EscrowStep, payouts: list[tuple[str, int]], source: str) -> None:
    """One entry for everything a step paid out: escrow → each receiver's net, and the fees."""
    receivers = [_recipient_user(escrow, address) for address, _ in payouts]
    all_fees = [escrow_fees(amount=gross, platform_fee_percent=escrow.platform_fee_percent) for _, gross in payouts]
    specs = [{"kind": Kind.ESCROW, "reference": escrow.engagement_id}]
    specs += [{"kind": Kind.USER_AVAILABLE, "user": u} if u else {"kind": Kind.EXTERNAL_STELLAR} for u in receivers]
    specs += [{"kind": Kind.TRUSTLESS_WORK_FEE}] if any(fees.trustless_work for fees in all_fees) else []
    specs += [{"kind": Kind.PLATFORM_FEE}] if any(fees.platform for fees in all_fees) else []
    (escrow_account, *accounts), locked = _ledger_accounts(specs)
    fee_accounts = {account.kind: account for account in accounts[len(payouts) :]}
    lines = [(escrow_account, -sum(g for _, g in payouts))]
    credited = []
    for (_, gross), fees, user, account in zip(payouts, all_fees, receivers, accounts[: len(payouts)], strict=True):
        lines += [(account, fees.net)] if fees.net else []
        if fees.trustless_work:
            lines.append((fee_accounts[Kind.TRUSTLESS_WORK_FEE], fees.trustless_work))
        if fees.platform:
            lines.append((fee_accounts[Kind.PLATFORM_FEE], fees.platform))
        if user is not None:
            credited.append((user, account, gross, fees.net))
    entry = ledger_post(
        idempotency_key=f"escrow-step:{step.key}",
        kind="escrow_payout",
        lines=lines,
        metadata={"escrow": escrow.public_id, "step": step.key},
        locked=locked,
    )
    escrow.balance -= sum(gross for _, gross in payouts)
    for user, account, gross, net in credited:
        if entry.replayed or not net:  # the posting set no new balance on it: read it
            account.refresh_from_db(fields=["balance"])
        event_publish(
            type="balance.credited",
            aggregate_type="Balance",
            aggregate_id=user.public_id,
            payload={
                "userId": user.public_id,
                "amount": money_from_stroops(gross),
                "netAmount": money_from_stroops(net),
                "currency": "USD",
                "source": source,
                "sourceId": escrow.engagement_id,
                "transactionHash": step.tx_hash,
                "previousAvailableBalance": money_from_stroops(account.balance - net),
                "newAvailableBalance": money_from_stroops(account.balance),
                "newBalance": money_from_stroops(account.balance),
            },
            user_id=user.public_id,
            marketplace_id=user.marketplace_id,
        )


def _settle_fund(escrow: Escrow, step: EscrowStep) -> None:
    amount = int(step.params["amount"])
    destination = ledger_account(kind=Kind.ESCROW, reference=escrow.engagement_id, likely_new=True)  # its first use
    # Locked and fresh: the balances before, and (set on them by the posting) after.
    available, held = user_accounts_locked(escrow.buyer)
    before = (available.balance, held.balance)
    key = f"escrow:{escrow.public_id}:fund"
    try:
        hold_post(
            user=escrow.buyer,
            reference=escrow.hold_reference,
            destination=destination,
            kind="escrow_fund",
            amount=amount,
            idempotency_key=key,
            accounts=(available, held),
        )
    except HoldNotFound:
        # The money left the buyer's wallet on chain whatever our holds say: follow the chain.
        entry = ledger_transfer(
            idempotency_key=key,
            kind="escrow_fund",
            source=available,
            destination=destination,
            amount=amount,
            locked={available.pk: available, held.pk: held},
        )
        if entry.replayed:  # nothing moved now: show what the accounts hold
            available.refresh_from_db(fields=["balance"])
    escrow.balance += amount
    escrow.mark_funded()
    buyer = escrow.buyer.public_id
    event_publish(
        type="balance.released",
        aggregate_type="Balance",
        aggregate_id=buyer,
        payload={
            "userId": buyer,
            "amount": money_from_stroops(amount),
            "currency": "USD",
            "orderId": escrow.engagement_id,
            "reason": "escrow_funded",
            "previousReservedBalance": money_from_stroops(before[1]),
            "newReservedBalance": money_from_stroops(held.balance),
            "previousAvailableBalance": money_from_stroops(before[0]),
            "newAvailableBalance": money_from_stroops(available.balance),
        },
        user_id=buyer,
        marketplace_id=escrow.buyer.marketplace_id,
    )
    _escrow_event(
        escrow,
        "escrow.funded",
        trustlessContractId=escrow.contract_id,
        amount=money_from_stroops(amount),
        fundedAt=iso_timestamp(escrow.funded_at),
    )


def _settle_finished(escrow: Escrow, *, refunded: bool, all_paid: bool = False) -> None:
    """Every milestone paid out (`all_paid`: the caller just paid them all): the escrow is
    RELEASED or REFUNDED."""
    if not all_paid and any(not (m.released or m.resolved) for m in escrow.milestones.all()):
        return
    if refunded:
        escrow.mark_refunded()
        _escrow_event(
            escrow,
            "escrow.refunded",
            buyerId=escrow.buyer.public_id,
            amount=money_from_stroops(escrow.amount),
            refundedAt=iso_timestamp(escrow.refunded_at),
        )
    else:
        escrow.mark_released()
        _escrow_event(
            escrow,
            "escrow.released",
            sellerId=escrow.seller.public_id,
            amount=money_from_stroops(escrow.amount),
            releasedAt=iso_timestamp(escrow.released_at),
        )


def _settle_payout(escrow: Escrow, step: EscrowStep, confirmed_at, writes: list) -> None:
    """`writes`: step_settle's row updates, made together after this (those read here are made at once)."""
    milestone = escrow.milestones.get(index=step.milestone_index) if step.milestone_index is not None else None
    if step.action == Action.RELEASE:
        _post_payouts(escrow, step, [(escrow.roles["receiver"], escrow.amount)], "release")
        writes.append((escrow.milestones.all(), {"released": True, "released_at": confirmed_at}))
        escrow.flags = {**escrow.flags, "released": True}
        _settle_finished(escrow, refunded=False, all_paid=True)
        return
    if step.action == Action.RELEASE_MILESTONE:
        _post_payouts(escrow, step, [(escrow.roles["serviceProvider"], milestone.amount)], "release")
        milestone.released, milestone.released_at = True, confirmed_at
        milestone.save(update_fields=["released", "released_at"])
        _escrow_event(
            escrow,
            "escrow.milestone_released",
            milestoneRef=milestone.ref,
            amount=money_from_stroops(milestone.amount),
            releasedAt=iso_timestamp(confirmed_at),
        )
        _settle_finished(escrow, refunded=False)
        return
    # A resolution: who got what decides the words (refund, split, release).
    payouts = [(address, int(amount)) for address, amount in step.params["distributions"]]
    to_buyer_only = all(address == escrow.roles["approver"] for address, _ in payouts)
    to_seller_only = all(address == escrow.roles["serviceProvider"] for address, _ in payouts)
    source = "refund" if to_buyer_only else "release" if to_seller_only else "dispute_split"
    _post_payouts(escrow, step, payouts, source)
    resolved = escrow.milestones.all() if milestone is None else escrow.milestones.filter(pk=milestone.pk)
    resolved.update(resolved=True, disputed=False)
    if milestone is None:
        escrow.flags = {**escrow.flags, "resolved": True, "disputed": False}
    refunded = escrow.status == Escrow.Status.REFUNDING
    _settle_finished(escrow, refunded=refunded)


def _escrow_state(escrow: Escrow) -> list:
    """The escrow's column values, copied: compared after settling, to save it only if changed."""
    return copy.deepcopy([getattr(escrow, field.attname) for field in Escrow._meta.concrete_fields])


def _escrow_saved(escrow: Escrow, initial_status: str) -> tuple:
    """What escrow.save() writes, as a row update (outbox_row_update): every column, only while the
    row still has the state it was read with (what ConcurrentTransitionMixin's save checks)."""
    values = {}
    for field in Escrow._meta.concrete_fields:
        if not field.primary_key:
            field.pre_save(escrow, add=False)  # updated_at = now, as save() sets it
            values[field.attname] = getattr(escrow, field.attname)
    return Escrow.objects.filter(pk=escrow.pk, status=initial_status), values


def _step_locked(step: EscrowStep, *related: str) -> EscrowStep:
    """The step and its escrow, fresh and locked in one query: the escrow's row first, then the
    step's (PostgreSQL locks a row's relations in the order FOR UPDATE OF names them), the
    order every writer of an escrow's steps uses. Its buyer and seller are read, not locked."""
    # Read along: whether the escrow has other open steps (a drive that settles this one and
    # sees none ends there, without reading for a next step).
    others = EscrowStep.objects.filter(escrow_id=OuterRef("escrow_id"), status__in=EscrowStep.OPEN).exclude(
        pk=OuterRef("pk")
    )
    return (
        EscrowStep.objects.select_for_update(of=("escrow", "self"))
        .select_related("escrow", *related)
        .annotate(others_open=Exists(others))
        .get(pk=step.pk)
    )


def _drive_queued(escrow_pk: int) -> bool:
    """Whether this transaction queued a drive of the escrow (a step added: see _drive_on_commit)."""
    return any(
        isinstance(func, _EscrowDrive) and func.escrow_pk == escrow_pk
        for _, func, _ in transaction.get_connection().run_on_commit
    )


def step_settle(*, step: EscrowStep, contract_id: str | None = None, confirmed_at=None) -> EscrowStep:
    """Record a step the chain confirmed, once: escrow state, ledger entry, events."""
    confirmed_at = confirmed_at or timezone.now()
    with transaction.atomic(), outbox_batched():
        step = _step_locked(step, "escrow__buyer", "escrow__seller")
        escrow = step.escrow
        if step.status == EscrowStep.Status.CONFIRMED:
            return step
        before, initial_status = _escrow_state(escrow), escrow.status
        writes = []  # row updates, made with the settle's audit rows and events
        action = step.action
        if action == Action.DEPLOY:
            escrow.mark_created(contract_id=contract_id)
            _escrow_event(escrow, "escrow.created", amount=money_from_stroops(escrow.amount), currency="USD")
        elif action == Action.FUND:
            _settle_fund(escrow, step)
        elif action == Action.MILESTONE_STATUS:
            milestone = escrow.milestones.get(index=step.milestone_index)
            milestone.chain_status, milestone.evidence = step.params["status"], step.params["evidence"]
            values = {"chain_status": milestone.chain_status, "evidence": milestone.evidence}
            writes.append((EscrowMilestone.objects.filter(pk=milestone.pk), values))
            if milestone.chain_status == "completed":
                _escrow_event(
                    escrow,
                    "escrow.milestone_completed",
                    milestoneRef=milestone.ref,
                    milestoneTitle=milestone.title,
                    amount=money_from_stroops(milestone.amount),
                    completedAt=iso_timestamp(confirmed_at),
                )
        elif action == Action.APPROVE:
            writes.append((escrow.milestones.filter(index=step.milestone_index), {"approved": True}))
        elif action in (Action.DISPUTE, Action.DISPUTE_MILESTONE):
            disputed = escrow.milestones.all()
            if action == Action.DISPUTE:
                escrow.flags = {**escrow.flags, "disputed": True}
            else:
                disputed = disputed.filter(index=step.milestone_index)
            disputed.update(disputed=True)
            if escrow.status == Escrow.Status.FUNDED:
                escrow.mark_disputed()
        else:
            _settle_payout(escrow, step, confirmed_at, writes)
        step.status, step.confirmed_at = EscrowStep.Status.CONFIRMED, confirmed_at
        step.error_code = step.error_message = ""
        step.updated_at = timezone.now()
        fields = ("status", "confirmed_at", "error_code", "error_message", "updated_at")
        writes.append((EscrowStep.objects.filter(pk=step.pk), {name: getattr(step, name) for name in fields}))
        # Written with the audit rows and events, in one statement (outbox_row_update): a listener
        # that reads one of these tables meanwhile has them written first.
        for queryset, values in writes:
            outbox_row_update(queryset, values)
        if _escrow_state(escrow) != before:  # an approval or a milestone's status leaves it as it is
            queryset, values = _escrow_saved(escrow, initial_status)
            outbox_row_update(queryset, values, expect=1)  # ConcurrentTransition if its state changed
            escrow._update_initial_state()  # as save() leaves it
        _audit(escrow, f"escrow.{action}.confirmed", (step.actor_type, step.actor_id), txHash=step.tx_hash)
        step_settled.send(sender=EscrowStep, step=step, escrow=escrow)
        # Nothing left for the drive that settled it: no other step was open, none was queued now.
        step.escrow_idle = not step.others_open and not _drive_queued(escrow.pk)
    return step


def step_fail(*, step: EscrowStep, code: str, message: str) -> EscrowStep:
    """A permanent refusal: the step and the calls queued after it fail; money stays where
    the chain has it (a failed fund keeps the hold, a failed payout keeps the escrow)."""
    with transaction.atomic(), outbox_batched():
        step = _step_locked(step, "escrow__buyer")
        escrow = step.escrow
        if step.status in (EscrowStep.Status.CONFIRMED, EscrowStep.Status.FAILED):
            return step
        step.status, step.error_code, step.error_message = EscrowStep.Status.FAILED, code[:80], message[:255]
        step.save(update_fields=["status", "error_code", "error_message", "updated_at"])
        escrow.steps.filter(status=EscrowStep.Status.PENDING, pk__gt=step.pk).update(
            status=EscrowStep.Status.FAILED, error_code="PREVIOUS_STEP_FAILED", error_message=f"{step.key}: {code}"
        )
        if escrow.status == Escrow.Status.FUNDING:
            escrow.funding_failed()
        elif escrow.status in (Escrow.Status.RELEASING, Escrow.Status.REFUNDING):
            if escrow.flags.get("disputed") or escrow.milestones.filter(disputed=True).exists():
                escrow.resolution_failed()
            else:
                escrow.payout_failed()
        escrow.save()
        _audit(escrow, f"escrow.{step.action}.failed", (step.actor_type, step.actor_id), code=code, message=message)
        step_failed.send(sender=EscrowStep, step=step, escrow=escrow)
    return step


# --- Retrying -----------------------------------------------------------------------------


def step_retry_delay(*, failures: int) -> timedelta:
    """How long a step waits after its `failures`-th failed run: doubling from
    ESCROW_STEP_RETRY_BASE_SECONDS up to ESCROW_STEP_RETRY_MAX_SECONDS, plus up to 25 %
    jitter so that the escrows an outage stopped together do not all come back at once."""
    base, cap = settings.ESCROW_STEP_RETRY_BASE_SECONDS, settings.ESCROW_STEP_RETRY_MAX_SECONDS
    seconds = min(base * 2 ** min(max(failures, 1) - 1, 30), cap)
    return timedelta(seconds=seconds * (1 + random.random() / 4))  # noqa: S311  (jitter, not security)


def step_postpone(*, step: EscrowStep, code: str, message: str) -> EscrowStep:
    """A run of the step ended without an outcome: count it, keep the error, and back off.
    The escrow's other open steps wait behind this one, so they lose any claim they had
    (the sweeper looks at the escrow again when this step is due)."""
    with transaction.atomic():
        step = EscrowStep.objects.select_for_update().get(pk=step.pk)
        if step.status not in EscrowStep.OPEN:
            return step
        step.failures += 1
        step.error_code, step.error_message = code[:80], message[:255]
        step.next_attempt_at = timezone.now() + step_retry_delay(failures=step.failures)
        step.save(update_fields=["failures", "error_code", "error_message", "next_attempt_at", "updated_at"])
        EscrowStep.objects.filter(escrow_id=step.escrow_id, status__in=EscrowStep.OPEN).exclude(pk=step.pk).update(
            next_attempt_at=None
        )
        if step.failures == settings.ESCROW_STEP_ATTENTION_AFTER:
            audit_record(
                action="escrow.step_needs_attention",
                resource_type="Escrow",
                resource_id=step.escrow.public_id,
                actor_type="SYSTEM",
                actor_id="escrow",
                payload_after={"step": step.key, "failures": step.failures, "code": step.error_code},
                result="FAILURE",
            )
    return step


@transaction.atomic
def escrow_retry_now(*, escrow: Escrow, actor) -> bool:
    """Support asks for the escrow's open steps to run now, without waiting out their
    back-off (the provider is back, a record was repaired). False if nothing is open."""
    escrow = _locked(escrow)
    waiting = escrow.steps.filter(status__in=EscrowStep.OPEN)
    if not waiting.exists():
        return False
    waiting.update(next_attempt_at=None)
    _audit(escrow, "escrow.retry_requested", actor, steps=list(waiting.values_list("key", flat=True)))
    escrow_drive_later(escrow)
    return True
