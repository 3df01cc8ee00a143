"""Compare our escrow records with the contracts, in batches of contract ids.

Trustless Work sends no webhooks, so this periodic read is how an outside change (or a
bug of ours) is noticed. Differences become an `EscrowDriftReport` for support; nothing
here moves money or changes an escrow's state.
"""

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from escrow.client import TrustlessWorkClient
from escrow.models import Escrow, EscrowDriftReport, EscrowStep
from escrow.services import units


def escrow_differences(escrow: Escrow, chain: dict | None) -> dict:
    """field → {ours, chain} for everything that should agree."""
    if chain is None:
        return {"contract": {"ours": escrow.contract_id, "chain": None}}
    differences = {}

    def compare(field: str, ours, theirs) -> None:
        if ours != theirs:
            differences[field] = {"ours": ours, "chain": theirs}

    compare("balance", str(units(escrow.balance)), str(chain.get("balance")))
    if not escrow.is_multi:
        flags = chain.get("flags") or {}
        compare("flags.disputed", bool(escrow.flags.get("disputed")), bool(flags.get("disputed")))
        compare("flags.released", bool(escrow.flags.get("released")), bool(flags.get("released")))
        compare("flags.resolved", bool(escrow.flags.get("resolved")), bool(flags.get("resolved")))
    chain_milestones = chain.get("milestones") or []
    compare("milestones.count", escrow.milestones.count(), len(chain_milestones))
    for milestone, theirs in zip(escrow.milestones.all(), chain_milestones, strict=False):
        prefix = f"milestones[{milestone.index}]"
        flags = theirs.get("flags") or {}
        compare(f"{prefix}.status", milestone.chain_status, theirs.get("status"))
        compare(f"{prefix}.evidence", milestone.evidence, theirs.get("evidence") or "")
        compare(f"{prefix}.approved", milestone.approved, bool(theirs.get("approved") or flags.get("approved")))
        if escrow.is_multi:
            compare(f"{prefix}.released", milestone.released, bool(flags.get("released")))
            compare(f"{prefix}.disputed", milestone.disputed, bool(flags.get("disputed")))
            compare(f"{prefix}.resolved", milestone.resolved, bool(flags.get("resolved")))
    return differences


def escrow_sync(*, client: TrustlessWorkClient | None = None, batch_size: int | None = None) -> int:
    """Check every deployed, unfinished escrow with no call in flight; returns how many drifted."""
    client = client or TrustlessWorkClient()
    batch_size = batch_size or settings.ESCROW_SYNC_BATCH_SIZE
    in_flight = EscrowStep.objects.filter(status__in=[EscrowStep.Status.PENDING, EscrowStep.Status.SUBMITTED])
    escrows = (
        Escrow.objects.exclude(status__in=Escrow.TERMINAL)
        .exclude(contract_id=None)
        .exclude(pk__in=in_flight.values("escrow_id"))
        .prefetch_related("milestones")
        .order_by("pk")
    )
    drifted = 0
    batch: list[Escrow] = []
    for escrow in escrows.iterator(chunk_size=batch_size):
        batch.append(escrow)
        if len(batch) == batch_size:
            drifted += _sync_batch(batch, client)
            batch = []
    if batch:
        drifted += _sync_batch(batch, client)
    return drifted


def _sync_batch(batch: list[Escrow], client: TrustlessWorkClient) -> int:
    found = {item["contractId"]: item for item in client.get_escrows([e.contract_id for e in batch])}
    drifted = 0
    now = timezone.now()
    for escrow in batch:
        differences = escrow_differences(escrow, found.get(escrow.contract_id))
        with transaction.atomic():
            report = EscrowDriftReport.objects.select_for_update().filter(escrow=escrow, status="OPEN").first()
            if differences:
                drifted += 1
                if report is None:
                    EscrowDriftReport.objects.create(escrow=escrow, differences=differences)
                else:
                    report.differences = differences
                    report.save(update_fields=["differences", "last_seen_at"])
            elif report is not None:
                report.status, report.resolved_at = EscrowDriftReport.Status.RESOLVED, now
                report.note = (report.note + "\n" if report.note else "") + f"Matched the contract again at {now:%c}."
                report.save()
            Escrow.objects.filter(pk=escrow.pk).update(synced_at=now)
    return drifted
