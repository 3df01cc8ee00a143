"""Thin Celery entry points; the work is in escrow.runner and escrow.sync."""

import logging
from datetime import timedelta

from celery import shared_task

from escrow.runner import escrow_drive, escrows_due_claim
from escrow.sync import escrow_sync

logger = logging.getLogger(__name__)

RESUME_AFTER = timedelta(seconds=15)  # a step untouched this long lost its worker or waits for a provider


@shared_task
def escrow_drive_task(escrow_pk: int) -> str:
    return escrow_drive(escrow_pk=escrow_pk)


@shared_task
def escrow_steps_resume(limit: int = 100) -> int:
    """Queue one drive per escrow with a step left open by a crash, a lost answer or an
    outage and due again; each runs (and fails, and backs off) on its own."""
    claimed = escrows_due_claim(limit=limit, stale_after=RESUME_AFTER)
    for escrow_pk in claimed:
        try:
            escrow_drive_task.delay(escrow_pk)
        except Exception:  # the broker (or, run in-process, the drive) failed: its claim expires, then it is due again
            logger.exception("could not drive escrow %s", escrow_pk)
    return len(claimed)


@shared_task
def escrow_sync_task() -> int:
    return escrow_sync()
