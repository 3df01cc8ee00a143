"""Airtm reconciliation: our top-ups and Airtm withdrawals against what Airtm says about them.

Hourly (payments.tasks.airtm_reconcile_task) and from the backoffice ("Run now"), every top-up and
Airtm withdrawal still in flight, those that changed in the last OFFERHUB_AIRTM_RECONCILE_DAYS days
and those with an OPEN discrepancy are, one by one:

1. settled by our own service first (`payments.topups.topup_refresh`,
   `payments.airtm_withdrawals.withdrawal_refresh_airtm`): whatever Airtm reports is applied through
   the normal state machine, a confirmed top-up's bridge and a paid withdrawal's sweep driven again,
   credits and events included. A lost webhook is therefore no discrepancy;
2. re-read from our database, then read from Airtm (`GET /payins/{id}`, `GET /payouts/{id}`, or by
   our code, the record's public id, when we hold no Airtm id), with no lock held;
3. compared. What still differs becomes (or refreshes) the record's one OPEN `AirtmDiscrepancy`,
   audited; a record found in agreement again has its OPEN discrepancy resolved, audited.

Discrepancies: Airtm is terminal and we are not, or we are terminal and Airtm is still moving, or
both are terminal with different outcomes (success against failure or cancel); the amounts differ;
Airtm holds a payin or payout under our code while our record has no Airtm id (Airtm has no
list-all endpoint: only codes we know are looked up); our record points at an Airtm id Airtm does
not know (404); we say succeeded and Airtm has nothing under our code.

Airtm done, the chain leg on its way: a top-up PROCESSING whose payin Airtm reports CONFIRMED waits
for its bridge (USDC from the treasury to the member's wallet), an Airtm withdrawal PENDING whose
payout Airtm reports COMPLETED waits for its sweep (the member's USDC to the treasury). Both agree
with Airtm until OFFERHUB_AIRTM_BRIDGE_STUCK_MINUTES have passed since Airtm's part was done (Airtm's
`updatedAt`; without it, when we saw the payin confirmed, or the withdrawal's creation); after that
the record is a discrepancy naming what holds the USDC up.

Money is never moved by the comparison: support investigates and corrects through the audited
services. One record that cannot be settled, read or compared never stops the run: it is logged,
counted in the outcome and compared again at the next run.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from offerhub.leases import job_lease_progress
from offerhub.money import money_from_stroops, money_to_stroops
from offerhub.services import audit_record
from payments.airtm import AirtmClient, AirtmError, PayinStatus, PayoutStatus
from payments.airtm_withdrawals import AIRTM_TYPES, withdrawal_refresh_airtm
from payments.models import AirtmDiscrepancy, Topup, Withdrawal
from payments.topups import topup_refresh

logger = logging.getLogger(__name__)

PAYIN, PAYOUT = AirtmDiscrepancy.Kind.PAYIN.value, AirtmDiscrepancy.Kind.PAYOUT.value
TERMINAL = {
    PAYIN: frozenset({PayinStatus.SUCCEEDED, PayinStatus.FAILED, PayinStatus.CANCELED}),
    PAYOUT: frozenset({PayoutStatus.COMPLETED, PayoutStatus.FAILED, PayoutStatus.CANCELED}),
}
SUCCEEDED = {PAYIN: PayinStatus.SUCCEEDED.value, PAYOUT: PayoutStatus.COMPLETED.value}
NOUN = {PAYIN: "payin", PAYOUT: "payout"}
# Where the USDC goes once Airtm's part is done, for "Paid at Airtm … has not reached …".
CHAIN_LEG = {PAYIN: "the USDC has not reached the member's wallet", PAYOUT: "the USDC has not reached the treasury"}
UNKNOWN = "UNKNOWN"
ACTOR = {"actor_type": "SYSTEM", "actor_id": "airtm-reconciler"}


@dataclass(frozen=True)
class AirtmRecord:
    """What we hold about one top-up or Airtm withdrawal."""

    kind: str  # "payin" | "payout"
    reference: str  # our public id (tu_…, wd_…): also its code at Airtm
    airtm_id: str  # blank: we never learnt it
    status: str  # ours: TOPUP_* or WITHDRAWAL_*
    amount: int  # stroops
    user_id: str  # the member's public id, for the audit row
    # Airtm's part done and the chain leg (bridge or sweep) on its way: what holds it up, in words.
    chain_leg: str | None = None
    done_at: datetime | None = None  # our own clock for it, when Airtm gives no date

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL[self.kind]

    @property
    def resource_type(self) -> str:
        return "Topup" if self.kind == PAYIN else "Withdrawal"


@dataclass(frozen=True)
class AirtmState:
    """What Airtm says about it: `found` False when Airtm does not know the id (404) or the code."""

    found: bool
    airtm_id: str = ""
    status: str = ""  # in our words (PayinStatus / PayoutStatus value), UNKNOWN for a status we do not know
    provider_status: str = ""  # Airtm's own word: CONFIRMED, COMPLETED…
    amount: int | None = None  # stroops
    updated_at: datetime | None = None  # Airtm's updatedAt


@dataclass
class AirtmReconciliation:
    """One run: how many records were compared, the discrepancies open after it, the records that
    could not be read (compared again at the next run)."""

    target = "airtm"
    checked: int = 0
    discrepancies: list = field(default_factory=list)
    failed: list = field(default_factory=list)

    @property
    def drifting(self) -> int:
        return len(self.discrepancies)

    def __str__(self):
        verdict = f"{self.drifting} with a discrepancy" if self.drifting else "none with a discrepancy"
        text = f"{self.checked} Airtm top-up(s) and withdrawal(s) compared, {verdict}"
        if self.failed:
            text += f", {len(self.failed)} not readable now (tried again at the next run)"
        return text


# --- our records ----------------------------------------------------------------------------


def _reason(text: str) -> str:
    return text.strip().rstrip(".")


def topup_record(topup: Topup) -> AirtmRecord:
    """A top-up (fetched with its user and bridge_withdrawal)."""
    chain_leg = None
    if topup.status == Topup.Status.PROCESSING and topup.payin_confirmed_at is not None:
        bridge = topup.bridge_withdrawal
        if bridge is None:
            chain_leg = "no bridge payment has been made yet"
        else:
            chain_leg = _reason(bridge.failure_reason) or f"the bridge payment {bridge.public_id} is {bridge.status}"
    return AirtmRecord(
        kind=PAYIN,
        reference=topup.public_id,
        airtm_id=topup.airtm_payin_id,
        status=topup.status,
        amount=topup.amount,
        user_id=topup.user.public_id,
        chain_leg=chain_leg,
        done_at=topup.payin_confirmed_at,
    )


def withdrawal_record(withdrawal: Withdrawal) -> AirtmRecord:
    """An Airtm withdrawal (fetched with its user). PENDING is where it waits for its sweep once
    Airtm has paid; while Airtm has not, the chain leg is never looked at."""
    chain_leg = None
    if withdrawal.status == Withdrawal.Status.PENDING:
        sent = f"the sweep {withdrawal.transaction_hash} has not landed" if withdrawal.transaction_hash else ""
        chain_leg = _reason(withdrawal.failure_reason) or sent or "the sweep has not been sent"
    return AirtmRecord(
        kind=PAYOUT,
        reference=withdrawal.public_id,
        airtm_id=withdrawal.airtm_payout_id,
        status=withdrawal.status,
        amount=withdrawal.amount,
        user_id=withdrawal.user.public_id,
        chain_leg=chain_leg,
        done_at=withdrawal.created_at,
    )


def _topups():
    return Topup.objects.select_related("user", "bridge_withdrawal")


def _withdrawals():
    return Withdrawal.objects.filter(purpose=Withdrawal.Purpose.WITHDRAWAL, destination_type__in=AIRTM_TYPES)


def _due(kind: str, rows, *, since):
    """In flight, changed since `since`, or with an OPEN discrepancy; oldest first."""
    open_ones = AirtmDiscrepancy.objects.filter(kind=kind, status=AirtmDiscrepancy.Status.OPEN)
    terminal = [status.value for status in TERMINAL[kind]]
    due = ~Q(status__in=terminal) | Q(updated_at__gte=since) | Q(public_id__in=open_ones.values("our_reference"))
    return rows.filter(due).select_related("user").order_by("pk")


def airtm_rows_to_compare() -> list[tuple[str, Topup | Withdrawal]]:
    """(kind, row) for every record the run compares: top-ups first, then withdrawals."""
    since = timezone.now() - timedelta(days=settings.OFFERHUB_AIRTM_RECONCILE_DAYS)
    return [(PAYIN, t) for t in _due(PAYIN, _topups(), since=since)] + [
        (PAYOUT, w) for w in _due(PAYOUT, _withdrawals(), since=since)
    ]


def _settled(kind: str, row, client: AirtmClient) -> AirtmRecord:
    """Our service applies Airtm's answer first; then the record as it is now. A service that
    fails is logged: the comparison still says what differs."""
    try:
        if kind == PAYIN:
            topup_refresh(topup=row, client=client)
        else:
            withdrawal_refresh_airtm(withdrawal=row, airtm=client)
    except Exception:
        logger.warning("could not settle %s %s before comparing", kind, row.public_id, exc_info=True)
    # Re-queried (never refresh_from_db: the status is a protected FSM field).
    if kind == PAYIN:
        return topup_record(_topups().get(pk=row.pk))
    return withdrawal_record(Withdrawal.objects.select_related("user").get(pk=row.pk))


# --- Airtm's side -----------------------------------------------------------------------------


def airtm_state(*, record: AirtmRecord, client: AirtmClient) -> AirtmState:
    """Airtm's view of the record: by its Airtm id, or by our code when we hold none.
    Raises AirtmError when Airtm cannot be read (anything but "not found")."""
    if record.kind == PAYIN:
        get, by_code = client.payin_get, client.payin_by_code
    else:
        get, by_code = client.payout_get, client.payout_by_code
    if record.airtm_id:
        try:
            found = get(record.airtm_id)
        except AirtmError as error:
            if error.http_status == 404:
                return AirtmState(found=False)
            raise
    else:
        found = by_code(record.reference)
        if found is None:
            return AirtmState(found=False)
    amount = None if found.amount is None else money_to_stroops(found.amount)
    return AirtmState(True, found.id, found.status.value, found.provider_status, amount, found.updated_at)


# --- the comparison ---------------------------------------------------------------------------


def _usd(stroops: int) -> str:
    return f"${money_from_stroops(stroops)}"


def _chain_leg_stuck(record: AirtmRecord, state: AirtmState) -> str | None:
    """Airtm done, the bridge or sweep on its way: None while that is normal, else the problem."""
    done_at = state.updated_at or record.done_at
    waited = timezone.now() - done_at if done_at else None
    if waited is not None and waited <= timedelta(minutes=settings.OFFERHUB_AIRTM_BRIDGE_STUCK_MINUTES):
        return None
    ago = f"{int(waited.total_seconds() // 60)} minutes ago" if waited is not None else "at an unknown time"
    return f"Paid at Airtm {ago}; {CHAIN_LEG[record.kind]}: {record.chain_leg}"


def airtm_problems(*, record: AirtmRecord, state: AirtmState) -> list[str]:
    """What differs, each in one sentence naming both sides; empty when they agree."""
    noun, ours = NOUN[record.kind], record.status
    if not state.found:
        if record.airtm_id:
            return [
                f"Airtm does not know {noun} {record.airtm_id} (404), which {record.reference} points at; we say {ours}"
            ]
        if ours == SUCCEEDED[record.kind]:
            return [f"We say {ours}, but Airtm has no {noun} under our code {record.reference}"]
        return []  # never created at Airtm: nothing to compare
    problems = []
    if not record.airtm_id:
        problems.append(
            f"Airtm has {noun} {state.airtm_id} under our code {record.reference} ({state.provider_status}), "
            f"but {record.reference} does not know it (no Airtm id); we say {ours}"
        )
    theirs_terminal = state.status in TERMINAL[record.kind]
    succeeded = SUCCEEDED[record.kind]
    if state.status == succeeded and record.chain_leg is not None:
        stuck = _chain_leg_stuck(record, state)
        if stuck:
            problems.append(stuck)
    elif theirs_terminal and (not record.terminal or (state.status == succeeded) != (ours == succeeded)):
        problems.append(f"Airtm says {state.provider_status}, we say {ours}")
    elif record.terminal and not theirs_terminal and state.status != UNKNOWN:
        problems.append(f"Airtm says {state.provider_status} (still moving), we say {ours}")
    if state.amount is not None and state.amount != record.amount:
        problems.append(f"Airtm says {_usd(state.amount)}, we say {_usd(record.amount)}")
    return problems


def _open_locked(record: AirtmRecord):
    return (
        AirtmDiscrepancy.objects.select_for_update()
        .filter(kind=record.kind, our_reference=record.reference, status=AirtmDiscrepancy.Status.OPEN)
        .first()
    )


def airtm_discrepancy_record(*, record: AirtmRecord, state: AirtmState, problems: list[str]):
    """Open or refresh the record's OPEN discrepancy, or resolve it when nothing differs any more.
    Returns the OPEN discrepancy, or None."""
    with transaction.atomic():
        found = _open_locked(record)
        if not problems:
            if found is not None:
                found.status, found.resolved_at = AirtmDiscrepancy.Status.RESOLVED, timezone.now()
                found.note = f"{found.note}\nBack in agreement at the next run.".strip()
                found.save()
                audit_record(
                    action="reconciliation.airtm_discrepancy_cleared",
                    resource_type=record.resource_type,
                    resource_id=record.reference,
                    payload_before={"problem": found.problem},
                    payload_after={"ourStatus": record.status, "airtmStatus": state.provider_status},
                    user_id=record.user_id,
                    **ACTOR,
                )
            return None
        problem = "; ".join(problems) + "."
        values = {
            "airtm_id": state.airtm_id or record.airtm_id,
            "our_status": record.status,
            "airtm_status": state.provider_status,
            "our_amount": record.amount,
            "airtm_amount": state.amount,
            "problem": problem,
        }
        if found is None:
            try:
                with transaction.atomic():
                    found = AirtmDiscrepancy.objects.create(kind=record.kind, our_reference=record.reference, **values)
            except IntegrityError:  # another run opened it meanwhile: refresh that one
                found = _open_locked(record)
            else:
                audit_record(
                    action="reconciliation.airtm_discrepancy_found",
                    resource_type=record.resource_type,
                    resource_id=record.reference,
                    payload_after={
                        "problem": problem,
                        "airtmId": values["airtm_id"],
                        "ourStatus": record.status,
                        "airtmStatus": state.provider_status,
                        "ourAmount": money_from_stroops(record.amount),
                        "airtmAmount": None if state.amount is None else money_from_stroops(state.amount),
                    },
                    result="DISCREPANCY_FOUND",
                    user_id=record.user_id,
                    **ACTOR,
                )
                return found
        for name, value in values.items():
            setattr(found, name, value)
        found.save()  # last_seen_at moves on
        return found


def airtm_record_reconcile(*, record: AirtmRecord, client: AirtmClient):
    """Compare one record with Airtm and record the outcome. HTTP first, no lock held."""
    state = airtm_state(record=record, client=client)
    return airtm_discrepancy_record(record=record, state=state, problems=airtm_problems(record=record, state=state))


def airtm_compare_all(*, client: AirtmClient | None = None) -> AirtmReconciliation:
    """The whole run (see the module doc). Never inside a transaction: it calls Airtm and the chain."""
    client = client or AirtmClient()
    outcome = AirtmReconciliation()
    for kind, row in airtm_rows_to_compare():
        job_lease_progress()  # outside the try: a lost lease ends the run, it is not one record's failure
        try:
            discrepancy = airtm_record_reconcile(record=_settled(kind, row, client), client=client)
        except Exception:  # one record that cannot be read or compared never stops the others
            logger.exception("could not compare %s %s with Airtm", kind, row.public_id)
            outcome.failed.append(row.public_id)
            continue
        outcome.checked += 1
        if discrepancy is not None:
            outcome.discrepancies.append(discrepancy)
    return outcome


def airtm_reconcile(*, client: AirtmClient | None = None) -> list:
    """Run it; the OPEN discrepancies it found or still sees."""
    return airtm_compare_all(client=client).discrepancies
