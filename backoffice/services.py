"""Support's workflow across the apps: the backoffice's services.

Reconciliation as support drives it: run a comparison now (wallets: chain against ledger,
payments.reconciliation; escrows: contract against our record, escrow.sync; airtm: our top-ups and
Airtm withdrawals against Airtm, payments.airtm_reconciliation) and acknowledge or resolve a report
of any kind with a note. Each is audited with the staff user as actor.
"""

from django.db import transaction
from django.utils import timezone

from escrow.client import TrustlessWorkError
from escrow.models import EscrowDriftReport
from escrow.sync import escrow_sync
from offerhub.errors import ServiceError
from offerhub.services import audit_record
from payments.airtm_reconciliation import AirtmReconciliation, airtm_compare_all
from payments.models import AirtmDiscrepancy, ReconciliationReport
from payments.reconciliation import ReconciliationOutcome, wallets_compare_all

RUN_TARGETS = ("wallets", "escrows", "airtm")


def reconciliation_run(*, target: str, staff) -> ReconciliationOutcome | AirtmReconciliation:
    """Support's "Run now": the periodic comparison of wallets (chain against ledger), of
    escrows (contract against our record) or of Airtm's payins and payouts (against our top-ups and
    withdrawals), now, audited with who asked and what it found.
    A provider that cannot be read is a ServiceError (audited as a failure); the reports
    already written for the wallets read before it stay."""
    if target not in RUN_TARGETS:
        raise ServiceError("VALIDATION_ERROR", f"target must be one of {', '.join(RUN_TARGETS)}", field="target")
    audit = {
        "action": "reconciliation.run",
        "resource_type": "Reconciliation",
        "resource_id": target,
        "actor_type": "SUPPORT",
        "actor_id": staff.public_id,
    }
    try:
        if target == "wallets":
            outcome = wallets_compare_all()
        elif target == "airtm":
            outcome = airtm_compare_all()  # a record it cannot read is counted, never stops the run
        else:
            outcome = ReconciliationOutcome(target, escrow_sync())
    except (ServiceError, TrustlessWorkError) as failure:
        audit_record(**audit, payload_after={"error": failure.code}, result="FAILURE")
        raise ServiceError(failure.code, f"The comparison stopped: {failure.message}") from failure
    audit_record(**audit, payload_after={"checked": outcome.checked, "drifting": outcome.drifting})
    return outcome


REPORT_MODELS = (ReconciliationReport, EscrowDriftReport, AirtmDiscrepancy)


def reconciliation_open_counts() -> dict[str, int]:
    """How many reports are OPEN, by kind: the reconciliation pages' summary."""
    return {
        "wallets": ReconciliationReport.objects.filter(status=ReconciliationReport.Status.OPEN).count(),
        "escrows": EscrowDriftReport.objects.filter(status=EscrowDriftReport.Status.OPEN).count(),
        "airtm": AirtmDiscrepancy.objects.filter(status=AirtmDiscrepancy.Status.OPEN).count(),
    }


def airtm_discrepancies_open(*, limit: int = 50) -> list[AirtmDiscrepancy]:
    """The OPEN Airtm discrepancies, newest first, as the wallet reconciliation page lists them."""
    return list(AirtmDiscrepancy.objects.filter(status=AirtmDiscrepancy.Status.OPEN).order_by("-detected_at")[:limit])


def _report_note(*, report, note: str, staff, resolve: bool):
    """Append a signed, dated note to an OPEN report (wallet or escrow drift); close it if resolving."""
    note = (note or "").strip()
    if not note:
        raise ServiceError("MISSING_REQUIRED_FIELD", "Write what you found and did in the note.", field="note")
    model = type(report)
    if model not in REPORT_MODELS:
        raise ServiceError("VALIDATION_ERROR", f"not a drift report: {model.__name__}", field="report")
    with transaction.atomic():
        locked = model.objects.select_for_update(of=("self",)).get(pk=report.pk)
        if locked.status != model.Status.OPEN:
            raise ServiceError("INVALID_STATE", f"This report is already {locked.status.lower()}.")
        before, verb = locked.status, "resolved" if resolve else "acknowledged"
        name = staff.display_name or staff.email
        line = f"{timezone.now():%Y-%m-%d %H:%M} UTC, {name} {verb}: {note}"
        locked.note = f"{locked.note}\n{line}".strip()
        update = ["note"]  # not last_seen_at: that is when the comparison last saw the drift
        if resolve:
            locked.status, locked.resolved_at = model.Status.RESOLVED, timezone.now()
            update += ["status", "resolved_at"]
        locked.save(update_fields=update)
        audit_record(
            action=f"reconciliation.{verb}",
            resource_type=model.__name__,
            resource_id=str(locked.pk),
            actor_type="SUPPORT",
            actor_id=staff.public_id,
            payload_before={"status": before},
            payload_after={"status": locked.status, "note": note},
        )
    return locked


def drift_report_acknowledge(*, report, note: str, staff):
    """Support has seen the report and says what it is doing; it stays open until the drift is fixed."""
    return _report_note(report=report, note=note, staff=staff, resolve=False)


def drift_report_resolve(*, report, note: str, staff):
    """Support closes the report, saying what it found and did (a correcting adjustment, a contract
    fixed). If the drift is still there, the next comparison opens a new report: nothing is hidden."""
    return _report_note(report=report, note=note, staff=staff, resolve=True)
