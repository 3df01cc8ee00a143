"""Thin Celery entry points; the work is in escrow.runner and escrow.sync."""

import logging
import random
from datetime import timedelta

from celery import shared_task

from escrow.runner import ESCROW_LOCK_TIMEOUT, escrow_drive, escrows_due_claim
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
# A drive that found its step's signer busy comes again after about this long, doubled for each
# give-back in a row up to the cap: a submission holds the signer for about the time a ledger
# takes to close, and a signer busy for longer (a queue of escrows behind it) is not polled.
SIGNER_BUSY_AGAIN_SECONDS = 1.0
SIGNER_BUSY_AGAIN_MAX_SECONDS = 10.0
# A worker's drive waits this long for another drive of the same escrow (which runs the steps
# queued meanwhile when it reads for the next), then gives its worker back and comes again as
# above: waiting, it would hold a worker idle while the other waits on a provider (a release
# queued while the delivery mark is still on its way to the network).
ESCROW_BUSY_GIVE_BACK_SECONDS = 0.5


@shared_task(bind=True)
def escrow_drive_task(self, escrow_pk: int, give_backs: int = 0) -> str:
    # Started: the steps are claimed for a running drive now, in the read of the first of them
    # (this run sets their back-off if they must wait; a crash leaves the claim to expire, and
    # the sweeper drives them again).
    # In a worker, a step whose signer is busy with another escrow's call gives the worker back
    # and comes again shortly. Run eagerly (embedded mode, tests) it waits for the signer
    # instead: queuing again would run the drive at once, recursively.
    # So does one that finds another drive of its escrow running, after a short wait.
    give_back = not (self.request.is_eager or self.app.conf.task_always_eager)
    outcome = escrow_drive(
        escrow_pk=escrow_pk,
        claim_for=DRIVE_CLAIM,
        give_back_when_signer_busy=give_back,
        escrow_busy_wait=ESCROW_BUSY_GIVE_BACK_SECONDS if give_back else ESCROW_LOCK_TIMEOUT,
    )
    if give_back and outcome in ("signer-busy", "busy"):
        escrow_drive_again(escrow_pk, give_backs=give_backs + 1)
    return outcome


def signer_busy_countdown(give_backs: int) -> float:
    """The pause before the `give_backs`-th drive in a row that found its signer busy: 1, 2, 4 …
    seconds up to the cap, each between half and all of it (jittered: the drives waiting for
    one signer do not all come back at once)."""
    doublings = min(max(give_backs - 1, 0), 10)  # bounded: a drive may give back for hours
    ceiling = min(SIGNER_BUSY_AGAIN_SECONDS * 2**doublings, SIGNER_BUSY_AGAIN_MAX_SECONDS)
    return ceiling * random.uniform(0.5, 1.0)  # noqa: S311  (jitter, not security)


def escrow_drive_again(escrow_pk: int, *, give_backs: int = 1) -> None:
    """Queue the drive again after a pause that grows with the give-backs in a row. Its steps
    stay claimed for DRIVE_CLAIM: if this message is lost, the sweeper drives them once the
    claim runs out."""
    countdown = signer_busy_countdown(give_backs)
    try:
        escrow_drive_task.apply_async((escrow_pk,), {"give_backs": give_backs}, countdown=countdown)
    except Exception:  # the broker is down: the sweeper drives it once the claim runs out
        logger.exception("could not queue escrow %s's drive again", escrow_pk)


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
