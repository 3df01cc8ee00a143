"""Reconciliation: the chain is the source of truth; the ledger must mirror each wallet.

Differences become ReconciliationReport rows for support (admin). Money is never
"fixed" silently: a correction is a support adjustment, audited like any other.

Support runs the comparison now and acknowledges or resolves a report with a note through
backoffice.services, which also covers the escrows' drift reports (escrow.sync).
"""

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from offerhub.leases import job_lease_progress
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
                "differenceUsd": money_from_stroops(comparison.difference),
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


def wallets_compare_all() -> ReconciliationOutcome:
    """Compare every active wallet, recording each drift; how many were compared and drift."""
    checked = drifting = 0
    for wallet in Wallet.objects.filter(status=Wallet.Status.ACTIVE).select_related("user").iterator():
        job_lease_progress()  # the periodic run keeps its lease (LeaseLost: another run took over)
        checked += 1
        if reconciliation_record(comparison=wallet_compare(wallet=wallet)) is not None:
            drifting += 1
    return ReconciliationOutcome("wallets", drifting, checked)


def wallets_reconcile() -> int:
    """Compare every active wallet; returns the number of wallets found drifting."""
    return wallets_compare_all().drifting
