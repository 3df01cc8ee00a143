"""Airtm reconciliation: our top-ups and Airtm withdrawals against what Airtm says about them.

Hourly (payments.tasks.airtm_reconcile_task) and from the backoffice ("Run now"), every top-up and
Airtm withdrawal still in flight, those that changed in the last OFFERHUB_AIRTM_RECONCILE_DAYS days
and those with an OPEN discrepancy are, one by one:

1. settled by our own service first (SETTLERS: `topup_refresh`, `withdrawal_refresh_airtm`), which
   applies any status Airtm reports through the normal state machine, credits and events included;
   when that service is not installed the step is skipped;
2. re-read from our database, then read from Airtm (`GET /payins/{id}`, `GET /payouts/{id}`, or by
   our code when we hold no Airtm id), with no lock held;
3. compared. What still differs becomes (or refreshes) the record's one OPEN `AirtmDiscrepancy`,
   audited; a record found in agreement again has its OPEN discrepancy resolved, audited.

Discrepancies: Airtm is terminal and we are not, or we are terminal and Airtm is still moving, or
both are terminal with different outcomes (success against failure or cancel); the amounts differ;
Airtm holds a payin or payout under our code while our record has no Airtm id (Airtm has no
list-all endpoint: only codes we know are looked up); our record points at an Airtm id Airtm does
not know (404); we say succeeded and Airtm has nothing under our code. Money is never moved here:
support investigates and corrects through the audited services.

The records are read through a small duck-typed interface (`AirtmRecord`), so the reconciler does
not depend on the top-up model: a top-up row needs `public_id`, `user`, `status` (TOPUP_*),
`amount` (stroops), `airtm_payin_id` and `updated_at`; a withdrawal, the same with `airtm_payout_id`.
The code a record was created under at Airtm is its `airtm_code` attribute when it has one, else
its public id.

One record that cannot be read or compared never stops the run: it is logged, counted in the
outcome and compared again at the next run.
"""

import importlib.util
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.apps import apps
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string

from offerhub.money import money_from_stroops, money_to_stroops
from offerhub.services import audit_record
from payments.airtm import AirtmClient, AirtmError, PayinStatus, PayoutStatus
from payments.models import AirtmDiscrepancy, Withdrawal

logger = logging.getLogger(__name__)

PAYIN, PAYOUT = AirtmDiscrepancy.Kind.PAYIN.value, AirtmDiscrepancy.Kind.PAYOUT.value
# Our services that apply Airtm's answer to a record; imported when they are installed.
SETTLERS = {"payin": "payments.topups.topup_refresh", "payout": "payments.airtm_withdrawals.withdrawal_refresh_airtm"}
SETTLER_ARGUMENT = {PAYIN: "topup", PAYOUT: "withdrawal"}
TERMINAL = {
    PAYIN: frozenset({PayinStatus.SUCCEEDED, PayinStatus.FAILED, PayinStatus.CANCELED}),
    PAYOUT: frozenset({PayoutStatus.COMPLETED, PayoutStatus.FAILED, PayoutStatus.CANCELED}),
}
SUCCEEDED = {PAYIN: PayinStatus.SUCCEEDED.value, PAYOUT: PayoutStatus.COMPLETED.value}
NOUN = {PAYIN: "payin", PAYOUT: "payout"}
UNKNOWN = "UNKNOWN"
ACTOR = {"actor_type": "SYSTEM", "actor_id": "airtm-reconciler"}


@dataclass(frozen=True)
class AirtmRecord:
    """What we hold about one top-up or Airtm withdrawal."""

    kind: str  # "payin" | "payout"
    reference: str  # our public id (tu_…, wd_…)
    code: str  # the code it was created under at Airtm
    airtm_id: str  # blank: we never learnt it
    status: str  # ours: TOPUP_* or WITHDRAWAL_*
    amount: int  # stroops
    user_id: str = ""  # the member's public id, for the audit row

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


def _topup_model():
    """The top-up model, when installed (payments.topups)."""
    try:
        return apps.get_model("payments", "Topup")
    except LookupError:
        return None


def _code(row) -> str:
    return getattr(row, "airtm_code", "") or row.public_id


def _user_id(row) -> str:
    user = getattr(row, "user", None)
    return getattr(user, "public_id", "") or ""


def topup_record(row) -> AirtmRecord:
    return AirtmRecord(
        PAYIN, row.public_id, _code(row), row.airtm_payin_id or "", row.status, row.amount, _user_id(row)
    )


def withdrawal_record(row) -> AirtmRecord:
    return AirtmRecord(
        PAYOUT, row.public_id, _code(row), row.airtm_payout_id or "", row.status, row.amount, _user_id(row)
    )


RECORD_OF = {PAYIN: topup_record, PAYOUT: withdrawal_record}


def _to_compare(kind: str, rows, *, since):
    """In flight, changed since `since`, or with an OPEN discrepancy; oldest first."""
    open_ones = AirtmDiscrepancy.objects.filter(kind=kind, status=AirtmDiscrepancy.Status.OPEN)
    terminal = [status.value for status in TERMINAL[kind]]
    due = ~Q(status__in=terminal) | Q(updated_at__gte=since) | Q(public_id__in=open_ones.values("our_reference"))
    return rows.filter(due).select_related("user").order_by("pk")


def airtm_rows_to_compare() -> list[tuple[str, object]]:
    """(kind, row) for every record the run compares."""
    since = timezone.now() - timedelta(days=settings.OFFERHUB_AIRTM_RECONCILE_DAYS)
    airtm_destinations = [Withdrawal.DestinationType.BANK, Withdrawal.DestinationType.AIRTM_BALANCE]
    rows = [
        (PAYOUT, w)
        for w in _to_compare(PAYOUT, Withdrawal.objects.filter(destination_type__in=airtm_destinations), since=since)
    ]
    topup = _topup_model()
    if topup is not None:
        rows = [(PAYIN, t) for t in _to_compare(PAYIN, topup.objects.all(), since=since)] + rows
    return rows


# --- settling first ---------------------------------------------------------------------------


def settler(kind: str):
    """Our service that applies Airtm's answer to a record of this kind, or None when it is not
    installed (its module is absent). A module that is there but fails to import is logged."""
    path = SETTLERS[kind]
    module = path.rpartition(".")[0]
    try:
        if importlib.util.find_spec(module) is None:
            return None
        return import_string(path)
    except ImportError:
        logger.exception("the %s settler %s cannot be imported: comparing without settling first", kind, path)
        return None


def _settle(kind: str, row, settle) -> None:
    if settle is None:
        return
    try:
        settle(**{SETTLER_ARGUMENT[kind]: row})
    except Exception:  # the comparison below still says what differs
        logger.warning("could not settle %s %s before comparing", kind, row.public_id, exc_info=True)


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
        found = by_code(record.code)
        if found is None:
            return AirtmState(found=False)
    amount = None if found.amount is None else money_to_stroops(found.amount)
    return AirtmState(True, found.id, found.status.value, found.provider_status, amount)


# --- the comparison ---------------------------------------------------------------------------


def _usd(stroops: int) -> str:
    return f"${money_from_stroops(stroops)}"


def airtm_problems(*, record: AirtmRecord, state: AirtmState) -> list[str]:
    """What differs, each in one sentence naming both sides; empty when they agree."""
    noun, ours = NOUN[record.kind], record.status
    if not state.found:
        if record.airtm_id:
            return [
                f"Airtm does not know {noun} {record.airtm_id} (404), which {record.reference} points at; we say {ours}"
            ]
        if ours == SUCCEEDED[record.kind]:
            return [f"We say {ours}, but Airtm has no {noun} under our code {record.code}"]
        return []  # never created at Airtm: nothing to compare
    problems = []
    if not record.airtm_id:
        problems.append(
            f"Airtm has {noun} {state.airtm_id} under our code {record.code} ({state.provider_status}), "
            f"but {record.reference} does not know it (no Airtm id); we say {ours}"
        )
    theirs_terminal = state.status in TERMINAL[record.kind]
    succeeded = SUCCEEDED[record.kind]
    if theirs_terminal and (not record.terminal or (state.status == succeeded) != (ours == succeeded)):
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
    """The whole run (see the module doc). Never inside a transaction: it calls Airtm."""
    client = client or AirtmClient()
    outcome = AirtmReconciliation()
    settlers = {kind: settler(kind) for kind in SETTLERS}
    for kind, row in airtm_rows_to_compare():
        try:
            _settle(kind, row, settlers[kind])
            # Re-read (never refresh_from_db: the status is a protected FSM field).
            row = type(row)._default_manager.select_related("user").get(pk=row.pk)
            discrepancy = airtm_record_reconcile(record=RECORD_OF[kind](row), client=client)
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
