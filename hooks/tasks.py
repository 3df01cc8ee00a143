"""Outgoing webhook jobs. Thin: each calls a service."""

import logging

from celery import shared_task

from hooks.services import deliveries_due_claim, delivery_attempt

logger = logging.getLogger(__name__)


@shared_task(name="hooks.tasks.outgoing_delivery_send")
def outgoing_delivery_send(delivery_pk: int) -> str:
    return delivery_attempt(delivery_pk=delivery_pk)


@shared_task(name="hooks.tasks.outgoing_deliveries_sweep")
def outgoing_deliveries_sweep(limit: int = 100) -> int:
    """Queue every pending delivery that is due: retries after their back-off, and first attempts
    whose post-commit task was lost."""
    due = deliveries_due_claim(limit=limit)
    for delivery_pk in due:
        try:
            outgoing_delivery_send.delay(delivery_pk)
        except Exception:  # the broker (or, run in-process, the attempt) failed: due again next sweep
            logger.exception("could not queue outgoing delivery %s", delivery_pk)
    return len(due)
