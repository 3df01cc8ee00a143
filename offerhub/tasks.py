"""Platform background jobs. Thin: each one calls a service or selector."""

import logging
from datetime import timedelta

from celery import shared_task
from django.apps import apps
from django.conf import settings
from django.db.models import Exists, Min, OuterRef, Q
from django.db.models.functions import Now
from django.utils import timezone

from offerhub.events import event_dead_letter_retry, event_subscribers, events_deliver, events_end_position
from offerhub.models import EmailNotification, Event, EventDeadLetter, IdempotencyRecord, SubscriberCursor
from offerhub.services import email_notifications_send

logger = logging.getLogger(__name__)

# Events of these aggregates are kept for as long as the aggregate exists, whatever their age:
# the order page's timeline is read from them (marketplace.order_views._timeline).
KEPT_WHILE_AGGREGATE_EXISTS = {"Order": ("marketplace", "Order", "public_id")}

# An e-mail not sent this long after its row was written lost its task (a crash, a broker
# outage); the sweeper queues it again.
EMAIL_GRACE = timedelta(minutes=2)


@shared_task(name="offerhub.tasks.events_dispatch")
def events_dispatch(*_legacy_event_pk) -> int:
    """Queued once per committed transaction that published events: position them, then run
    the subscribers that have events to take. (Older messages carried an event pk: ignored.)"""
    return events_deliver()


@shared_task(name="offerhub.tasks.events_dispatch_pending")
def events_dispatch_pending() -> int:
    """Every minute: what no post-commit task delivered (a crash, a broker outage) and the
    subscribers whose back-off is over. Safe to run beside the per-transaction tasks."""
    return events_deliver()


@shared_task(name="offerhub.tasks.event_dead_letter_retry")
def event_dead_letter_retry_task(dead_letter_pk: int) -> bool:
    dead_letter = EventDeadLetter.objects.filter(pk=dead_letter_pk, resolved_at__isnull=True).first()
    return dead_letter is None or event_dead_letter_retry(dead_letter=dead_letter)


@shared_task(name="offerhub.tasks.email_notification_send")
def email_notification_send(notification_pk: int) -> bool:
    """One e-mail (messages queued before e-mails were sent in batches)."""
    return email_notifications_send(notification_pks=[notification_pk]) == 1


@shared_task(name="offerhub.tasks.email_notifications_send")
def email_notifications_send_task(notification_pks: list[int]) -> int:
    """The e-mails one transaction wrote outside a task, sent together (see email_notifications_send)."""
    return email_notifications_send(notification_pks=notification_pks)


@shared_task(name="offerhub.tasks.email_notifications_sweep")
def email_notifications_sweep(limit: int = 200) -> int:
    """Every minute: e-mails written longer than EMAIL_GRACE ago and still unsent, in one task;
    not those a sender has claimed (it is sending them), but those whose claim lapsed (the
    sender was killed before it recorded the outcome)."""
    cutoff = timezone.now() - EMAIL_GRACE
    pending = list(
        EmailNotification.objects.filter(sent_at__isnull=True, created_at__lt=cutoff)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=Now()))  # the database's clock
        .order_by("id")
        .values_list("pk", flat=True)[:limit]
    )
    if pending:
        try:
            email_notifications_send_task.delay(pending)
        except Exception:  # the broker, or (in process) the mail server: due again next minute
            logger.exception("could not send %s e-mail notifications", len(pending))
    return len(pending)


@shared_task(name="offerhub.tasks.idempotency_reap_expired")
def idempotency_reap_expired() -> int:
    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted


@shared_task(name="offerhub.tasks.events_reap_expired")
def events_reap_expired() -> int:
    """Drop events older than the retention window (OFFERHUB_EVENT_RETENTION_DAYS) that every
    subscriber has passed and none holds as a dead letter; events of an aggregate that still
    exists (an order) stay, as its page's timeline is built from them."""
    cutoff = timezone.now() - timedelta(days=settings.OFFERHUB_EVENT_RETENTION_DAYS)
    names = [registration.name for registration in event_subscribers()]
    slowest = SubscriberCursor.objects.filter(name__in=names).aggregate(low=Min("position"))["low"]
    expired = Event.objects.filter(occurred_at__lt=cutoff, position__isnull=False).exclude(
        Exists(EventDeadLetter.objects.filter(event=OuterRef("pk")))
    )
    if slowest is not None:
        expired = expired.filter(position__lte=slowest)
    # The newest positioned event always stays: positions continue from the highest one kept
    # (MAX + 1), so reaping it would hand its number out again, and every cursor and stream
    # already past it would skip the new event.
    expired = expired.filter(position__lt=events_end_position())
    for aggregate_type, (app_label, model_name, field) in KEPT_WHILE_AGGREGATE_EXISTS.items():
        model = apps.get_model(app_label, model_name)
        expired = expired.exclude(
            Q(aggregate_type=aggregate_type) & Exists(model.objects.filter(**{field: OuterRef("aggregate_id")}))
        )
    deleted, _ = expired.delete()
    # E-mails sent before the window whose event is gone: no redelivery can ask for them again.
    EmailNotification.objects.filter(sent_at__lt=cutoff).exclude(
        Exists(Event.objects.filter(event_id=OuterRef("event_id")))
    ).delete()
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
