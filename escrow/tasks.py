"""Thin Celery entry points; the work is in escrow.runner and escrow.sync."""

from datetime import timedelta

from celery import shared_task
from django.db.models import Min
from django.utils import timezone

from escrow.models import EscrowStep
from escrow.runner import escrow_drive
from escrow.sync import escrow_sync

RESUME_AFTER = timedelta(seconds=15)  # a step untouched this long lost its worker or waits for a provider


@shared_task
def escrow_drive_task(escrow_pk: int) -> str:
    return escrow_drive(escrow_pk=escrow_pk)


@shared_task
def escrow_steps_resume(limit: int = 100) -> int:
    """Drive every escrow with a step left open by a crash, a lost answer or an outage."""
    stale = (
        EscrowStep.objects.filter(
            status__in=[EscrowStep.Status.PENDING, EscrowStep.Status.SUBMITTED],
            updated_at__lt=timezone.now() - RESUME_AFTER,
        )
        .values("escrow_id")
        .annotate(oldest=Min("updated_at"))
        .order_by("oldest")[:limit]
    )
    escrow_pks = [row["escrow_id"] for row in stale]
    for escrow_pk in escrow_pks:
        escrow_drive(escrow_pk=escrow_pk)
    return len(escrow_pks)


@shared_task
def escrow_sync_task() -> int:
    return escrow_sync()
