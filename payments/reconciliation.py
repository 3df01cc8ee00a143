"""Reconciliation: the chain is the source of truth; the ledger must mirror each wallet.

Differences become ReconciliationReport rows for support (admin). Money is never
"fixed" silently: a correction is a support adjustment, audited like any other.

Support runs a comparison now (wallets here, escrows through escrow.sync) and acknowledges
or resolves a report, of either kind, with a note: the services at the end of this module.
"""

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from escrow.client import TrustlessWorkError
from escrow.models import EscrowDriftReport
from escrow.sync import escrow_sync
from offerhub.errors import ServiceError
from offerhub.money import money_from_stroops
from offerhub.services import audit_record
from payments.ledger import user_accounts
from payments.models import ReconciliationReport, Wallet
from payments.stellar import account_load, usdc_balance


@dataclass
class WalletComparison:
    wallet: Wallet
    chain: int | None  # stroops; None when the chain could not be read
    ledger: int

    @property
    def difference(self) -> int | None:
        return None if self.chain is None else self.chain - self.ledger


def wallet_compare(*, wallet: Wallet) -> WalletComparison:
    """The wallet's USDC on chain against available + held in the ledger."""
    available, held = user_accounts(wallet.user)
    account = account_load(wallet.public_key)
    chain = usdc_balance(account) if account is not None else 0
    return WalletComparison(wallet=wallet, chain=chain or 0, ledger=available.balance + held.balance)


@transaction.atomic
def reconciliation_record(*, comparison: WalletComparison) -> ReconciliationReport | None:
    """Open (or refresh) a report when the wallet drifts; resolve it when it no longer does."""
    report = (
        ReconciliationReport.objects.select_for_update()
        .filter(wallet=comparison.wallet, status=ReconciliationReport.Status.OPEN)
        .first()
    )
    if comparison.difference == 0:
        if report is not None:
            report.status = ReconciliationReport.Status.RESOLVED
            report.resolved_at = timezone.now()
            report.note = (report.note + "\nBack in agreement at the next run.").strip()
            report.save()
        return None
    if report is None:
        report = ReconciliationReport(wallet=comparison.wallet)
        audit_record(
            action="reconciliation.discrepancy_found",
            resource_type="Wallet",
            resource_id=comparison.wallet.public_id,
            actor_type="SYSTEM",
            actor_id="reconciler",
            payload_after={
                "chainUsd": money_from_stroops(comparison.chain),
                "ledgerUsd": money_from_stroops(comparison.ledger),
                "differenceStroops": comparison.difference,
            },
            result="DISCREPANCY_FOUND",
            user_id=comparison.wallet.user.public_id,
        )
    report.chain_balance = comparison.chain
    report.ledger_balance = comparison.ledger
    report.difference = comparison.difference
    report.save()
    return report


@dataclass(frozen=True)
class ReconciliationOutcome:
    target: str  # "wallets" or "escrows"
    drifting: int
    checked: int | None = None  # wallets compared (the escrow check does not count its own)

    def __str__(self):
        things = "wallet" if self.target == "wallets" else "escrow"
        checked = f"{self.checked} {things}(s) compared, " if self.checked is not None else ""
        verdict = f"{self.drifting} drifting" if self.drifting else "none drifting"
        return f"{checked}{verdict}"


def _wallets_compare_all() -> ReconciliationOutcome:
    checked = drifting = 0
    for wallet in Wallet.objects.filter(status=Wallet.Status.ACTIVE).select_related("user").iterator():
        checked += 1
        if reconciliation_record(comparison=wallet_compare(wallet=wallet)) is not None:
            drifting += 1
    return ReconciliationOutcome("wallets", drifting, checked)


def wallets_reconcile() -> int:
    """Compare every active wallet; returns the number of wallets found drifting."""
    return _wallets_compare_all().drifting


RUN_TARGETS = ("wallets", "escrows")


def reconciliation_run(*, target: str, staff) -> ReconciliationOutcome:
    """Support's "Run now": the periodic comparison of wallets (chain against ledger) or of
    escrows (contract against our record), now, audited with who asked and what it found.
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
        outcome = _wallets_compare_all() if target == "wallets" else ReconciliationOutcome(target, escrow_sync())
    except (ServiceError, TrustlessWorkError) as failure:
        audit_record(**audit, payload_after={"error": failure.code}, result="FAILURE")
        raise ServiceError(failure.code, f"The comparison stopped: {failure.message}") from failure
    audit_record(**audit, payload_after={"checked": outcome.checked, "drifting": outcome.drifting})
    return outcome


REPORT_KINDS = {ReconciliationReport: "wallet", EscrowDriftReport: "escrow"}


def _report_note(*, report, note: str, staff, resolve: bool):
    """Append a signed, dated note to an OPEN report (wallet or escrow drift); close it if resolving."""
    note = (note or "").strip()
    if not note:
        raise ServiceError("MISSING_REQUIRED_FIELD", "Write what you found and did in the note.", field="note")
    model = type(report)
    if model not in REPORT_KINDS:
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
