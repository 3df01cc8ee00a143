"""Platform background jobs. Thin: each one calls a service or selector."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from offerhub.events import event_dispatch
from offerhub.models import Event, IdempotencyRecord

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
