"""Platform background jobs. Thin: each one calls a service or selector."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from offerhub.events import event_dispatch
from offerhub.models import Event, IdempotencyRecord

logger = logging.getLogger(__name__)

# An event not dispatched this long after it was written lost its post-commit
# dispatch (a crash, a broker outage); the sweeper sends it.
DISPATCH_GRACE = timedelta(seconds=30)


@shared_task(name="offerhub.tasks.events_dispatch")
def events_dispatch(event_pk: int) -> None:
    event = Event.objects.filter(pk=event_pk, dispatched_at__isnull=True).first()
    if event is not None:
        event_dispatch(event=event)


@shared_task(name="offerhub.tasks.events_dispatch_pending")
def events_dispatch_pending(batch_size: int = 500) -> int:
    cutoff = timezone.now() - DISPATCH_GRACE
    pending = Event.objects.filter(dispatched_at__isnull=True, occurred_at__lt=cutoff).order_by("id")[:batch_size]
    count = 0
    for event in pending:
        event_dispatch(event=event)
        count += 1
    return count


@shared_task(name="offerhub.tasks.idempotency_reap_expired")
def idempotency_reap_expired() -> int:
    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted


@shared_task(name="offerhub.tasks.events_reap_expired")
def events_reap_expired() -> int:
    """Drop dispatched events older than the retention window (OFFERHUB_EVENT_RETENTION_DAYS)."""
    cutoff = timezone.now() - timedelta(days=settings.OFFERHUB_EVENT_RETENTION_DAYS)
    deleted, _ = Event.objects.filter(occurred_at__lt=cutoff, dispatched_at__isnull=False).delete()
    return deleted


# Back-off of a failed webhook delivery: 10 s, 20 s, 40 s, 80 s; then the sweeper, every minute.
WEBHOOK_RETRY_BASE_SECONDS = 10
WEBHOOK_TASK_RETRIES = 4


@shared_task(bind=True, name="offerhub.tasks.webhook_delivery_process", max_retries=WEBHOOK_TASK_RETRIES)
def webhook_delivery_process(self, delivery_pk: int) -> str:
    from offerhub.webhooks import MAX_ATTEMPTS, ProcessingFailed, webhook_process  # services imports this module

    try:
        return webhook_process(delivery_pk=delivery_pk)
    except ProcessingFailed as failed:
        if failed.attempts >= MAX_ATTEMPTS:
            return "FAILED"  # left for support's "Process again"
        raise self.retry(countdown=WEBHOOK_RETRY_BASE_SECONDS * 2 ** (failed.attempts - 1), exc=failed) from None


@shared_task(name="offerhub.tasks.webhook_deliveries_sweep")
def webhook_deliveries_sweep(limit: int = 100) -> int:
    """Queue deliveries left RECEIVED or FAILED by a crash or spent retries; each runs on its own,
    so one that fails again does not stop the others."""
    from offerhub.webhooks import webhook_deliveries_due_claim

    claimed = webhook_deliveries_due_claim(limit=limit)
    for delivery_pk in claimed:
        try:
            webhook_delivery_process.delay(delivery_pk)
        except Exception:  # the broker (or, run in-process, the processing) failed: due again later
            logger.exception("could not queue webhook delivery %s", delivery_pk)
    return len(claimed)
