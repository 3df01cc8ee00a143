"""Thin Celery entry points; the work is in escrow.runner and escrow.sync."""

import logging
from datetime import timedelta

from celery import shared_task

from escrow.runner import escrow_drive, escrows_due_claim
from escrow.services import DRIVE_CLAIM
from escrow.sync import escrow_sync
from offerhub.leases import job_lease

logger = logging.getLogger(__name__)

RESUME_AFTER = timedelta(seconds=15)  # a step untouched this long lost its worker or waits for a provider
# The sweeper claims an escrow's steps this long when it queues their drive: a drive still waiting
# in a worker backlog is not queued a second time; a message the broker lost is queued again after.
# The drive shortens the claim to DRIVE_CLAIM when it starts, so a crashed drive is retried sooner.
DRIVE_QUEUED_FOR = timedelta(minutes=10)
RESUME_LEASE = timedelta(minutes=5)  # renewed per escrow (run in-process, each drive runs inline)
SYNC_LEASE = timedelta(minutes=30)  # escrow_sync does not renew: longer than any run should take


@shared_task
def escrow_drive_task(escrow_pk: int) -> str:
    # Started: the steps are claimed for a running drive now, in the read of the first of them
    # (this run sets their back-off if they must wait; a crash leaves the claim to expire, and
    # the sweeper drives them again).
    return escrow_drive(escrow_pk=escrow_pk, claim_for=DRIVE_CLAIM)


@shared_task
def escrow_steps_resume(limit: int = 100) -> int:
    """Queue one drive per escrow with a step left open by a crash, a lost answer or an
    outage and due again; each runs (and fails, and backs off) on its own. Single-flight
    (a lease), and an escrow is claimed for as long as its drive may wait in the queue."""
    claimed: list[int] = []
    with job_lease(name="escrow_steps_resume", ttl=RESUME_LEASE) as lease:
        if lease is None:
            return 0
        claimed = escrows_due_claim(limit=limit, stale_after=RESUME_AFTER, claim_for=DRIVE_QUEUED_FOR)
        for escrow_pk in claimed:
            lease.progress()
            try:
                escrow_drive_task.delay(escrow_pk)
            except Exception:  # the broker (or, run in-process, the drive) failed: due again once its claim expires
                logger.exception("could not drive escrow %s", escrow_pk)
    return len(claimed)


@shared_task
def escrow_sync_task() -> int:
    """Single-flight: two runs would compare (and report) the same escrows side by side."""
    with job_lease(name="escrow_sync", ttl=SYNC_LEASE) as lease:
        return 0 if lease is None else escrow_sync()
    return 0  # the lease was lost mid-run
