"""Outgoing webhooks (API.md §14): endpoints, one delivery per (endpoint, event), attempts.

A delivery is created by the event subscriber and sent after commit; a failed attempt is
retried with exponential back-off (the sweeper queues what is due) until RETRY_WINDOW has
passed since it was created (or re-sent), then it is `failed`. An attempt claims its row
(SELECT … FOR UPDATE SKIP LOCKED and a lease on `next_attempt_at`), sends with no row locked,
then records the outcome.
"""

import json
import logging
import time
from datetime import timedelta

import urllib3
from django.conf import settings
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from hooks.models import ERROR_MAX, RESPONSE_BODY_MAX, OutgoingDelivery, WebhookEndpoint
from hooks.signing import SIGNATURE_HEADER, signature_header
from hooks.transport import destination_check, http_post
from offerhub.errors import ServiceError
from offerhub.events import event_type_matches
from offerhub.models import AuditLog
from offerhub.services import audit_record

logger = logging.getLogger(__name__)

Status = OutgoingDelivery.Status

RETRY_WINDOW = timedelta(days=3)
BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 6 * 3600
# While an attempt is in flight its row is "due" again only after this: longer than the HTTP deadline.
ATTEMPT_LEASE = timedelta(seconds=120)
ENDPOINTS_MAX_PER_TENANT = 20


def backoff_seconds(attempts: int) -> int:
    """Delay after the `attempts`-th failed attempt: 30 s, 1 min, 2 min, … capped at 6 h."""
    return min(BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_MAX_SECONDS)


def endpoints_visible(*, marketplace_id: str = ""):
    """Endpoints a key may see: its marketplace's, or all of them for a platform key (§1.10)."""
    rows = WebhookEndpoint.objects.filter(deleted_at__isnull=True)
    return rows.filter(marketplace_id=marketplace_id) if marketplace_id else rows


# --- Endpoints ---------------------------------------------------------------------------


@transaction.atomic
def webhook_endpoint_create(
    *, url: str, events: list[str], description: str = "", marketplace_id: str = "", actor_type: str, actor_id: str
) -> WebhookEndpoint:
    """A new endpoint; its `secret` is on the returned object, to be shown once."""
    destination_check(url, must_resolve=False)
    if endpoints_visible(marketplace_id=marketplace_id).filter(marketplace_id=marketplace_id).count() >= (
        ENDPOINTS_MAX_PER_TENANT
    ):
        raise ServiceError("INVALID_REQUEST", f"At most {ENDPOINTS_MAX_PER_TENANT} webhook endpoints per marketplace")
    endpoint = WebhookEndpoint.objects.create(
        url=url,
        events=list(dict.fromkeys(events)) or ["*"],
        description=description,
        marketplace_id=marketplace_id,
        created_by=f"{actor_type}:{actor_id}",
    )
    audit_record(
        action="webhook_endpoint.created",
        resource_type="WebhookEndpoint",
        resource_id=endpoint.id,
        actor_type=actor_type,
        actor_id=actor_id,
        payload_after={"url": url, "events": endpoint.events, "description": description},
        marketplace_id=marketplace_id,
    )
    return endpoint


@transaction.atomic
def webhook_endpoint_delete(*, endpoint: WebhookEndpoint, actor_type: str, actor_id: str) -> WebhookEndpoint:
    """Soft delete: it stops receiving and leaves the API; its delivery log stays for support."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    if endpoint.deleted_at is None:
        now = timezone.now()
        endpoint.deleted_at, endpoint.enabled = now, False
        endpoint.disabled_reason, endpoint.disabled_at = "deleted", endpoint.disabled_at or now
        endpoint.save(update_fields=["deleted_at", "enabled", "disabled_reason", "disabled_at"])
        audit_record(
            action="webhook_endpoint.deleted",
            resource_type="WebhookEndpoint",
            resource_id=endpoint.id,
            actor_type=actor_type,
            actor_id=actor_id,
            payload_after={"deletedAt": now.isoformat()},
            marketplace_id=endpoint.marketplace_id,
        )
    return endpoint


@transaction.atomic
def webhook_endpoint_set_enabled(
    *, endpoint: WebhookEndpoint, enabled: bool, reason: str = "", actor_type: str, actor_id: str
) -> WebhookEndpoint:
    """Disable (with a reason) or enable again; a deleted endpoint stays off."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    if endpoint.deleted_at is not None and enabled:
        raise ServiceError("INVALID_STATE", "A deleted webhook endpoint cannot be enabled again.")
    if endpoint.enabled == enabled:
        return endpoint
    before = {"enabled": endpoint.enabled, "disabledReason": endpoint.disabled_reason}
    endpoint.enabled = enabled
    endpoint.disabled_reason = "" if enabled else (reason or "disabled")[:255]
    endpoint.disabled_at = None if enabled else timezone.now()
    endpoint.failing_since = None if enabled else endpoint.failing_since
    endpoint.save(update_fields=["enabled", "disabled_reason", "disabled_at", "failing_since"])
    audit_record(
        action="webhook_endpoint.enabled" if enabled else "webhook_endpoint.disabled",
        resource_type="WebhookEndpoint",
        resource_id=endpoint.id,
        actor_type=actor_type,
        actor_id=actor_id,
        payload_before=before,
        payload_after={"enabled": endpoint.enabled, "disabledReason": endpoint.disabled_reason},
        marketplace_id=endpoint.marketplace_id,
    )
    return endpoint


# --- Deliveries --------------------------------------------------------------------------


def _endpoints_for(event: dict):
    """Enabled endpoints of the event's tenant (platform endpoints hear every tenant) whose
    filter matches its type."""
    marketplace_id = (event.get("metadata") or {}).get("marketplaceId") or ""
    candidates = WebhookEndpoint.objects.filter(enabled=True, deleted_at__isnull=True).filter(
        Q(marketplace_id="") | Q(marketplace_id=marketplace_id)
    )
    return [
        endpoint
        for endpoint in candidates
        if any(event_type_matches(pattern, event["eventType"]) for pattern in endpoint.events)
    ]


def _send_later(delivery_pks: list[int]) -> None:
    from hooks.tasks import outgoing_delivery_send

    for pk in delivery_pks:
        # robust: a broker outage must not undo the caller's commit; the sweeper sends what is due.
        transaction.on_commit(lambda pk=pk: outgoing_delivery_send.delay(pk), robust=True)


def deliveries_create(*, event: dict) -> list[OutgoingDelivery]:
    """One pending delivery per matching endpoint, queued after commit. Idempotent on the event
    id: a second call (an at-least-once redelivery of the event) creates and queues nothing new."""
    endpoints = _endpoints_for(event)
    if not endpoints:
        return []
    body = json.dumps(event, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    now = timezone.now()
    created = []
    with transaction.atomic():
        existing = set(
            OutgoingDelivery.objects.filter(event_id=event["eventId"], endpoint__in=endpoints).values_list(
                "endpoint_id", flat=True
            )
        )
        for endpoint in endpoints:
            if endpoint.pk in existing:
                continue
            try:
                with transaction.atomic():  # a savepoint: the unique constraint settles a concurrent copy
                    created.append(
                        OutgoingDelivery.objects.create(
                            endpoint=endpoint,
                            event_id=event["eventId"],
                            event_type=event["eventType"][:100],
                            body=body,
                            created_at=now,
                            next_attempt_at=now,
                            retry_until=now + RETRY_WINDOW,
                        )
                    )
            except IntegrityError:
                continue
        _send_later([delivery.pk for delivery in created])
    return created


def _claim(delivery_pk: int, now) -> OutgoingDelivery | None:
    with transaction.atomic():
        delivery = (
            OutgoingDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint")
            .filter(pk=delivery_pk, status=Status.PENDING, next_attempt_at__lte=now)
            .first()
        )
        if delivery is None:
            return None
        delivery.attempts += 1
        delivery.next_attempt_at = now + ATTEMPT_LEASE
        delivery.last_attempt_at = now
        delivery.save(update_fields=["attempts", "next_attempt_at", "last_attempt_at", "updated_at"])
        return delivery


def delivery_attempt(*, delivery_pk: int) -> str:
    """One attempt at a due pending delivery; returns its status afterwards ("skipped" when it
    was not due, not pending, or another worker holds it)."""
    now = timezone.now()
    delivery = _claim(delivery_pk, now)
    if delivery is None:
        return "skipped"
    endpoint = delivery.endpoint
    body = delivery.body.encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "OfferHub-Webhooks/1",
        "OfferHub-Event-Id": delivery.event_id,
        "OfferHub-Event-Type": delivery.event_type,
        SIGNATURE_HEADER: signature_header(secret=endpoint.secret, body=body, timestamp=timestamp),
    }
    status, answer, error, started = None, b"", "", time.monotonic()
    if not endpoint.enabled or endpoint.deleted_at is not None:
        error = f"endpoint disabled: {endpoint.disabled_reason or 'disabled'}"
    else:
        try:
            destination = destination_check(endpoint.url)  # again now: DNS may answer differently
            reply = http_post(destination, body=body, headers=headers, max_body=RESPONSE_BODY_MAX)
            status, answer = reply.status, reply.body
            if 300 <= status < 400:
                error = f"redirect not followed (Location: {reply.location})"
            elif not 200 <= status < 300:
                error = f"answered {status}"
        except ServiceError as refused:
            error = f"url {refused.message}"
        except (urllib3.exceptions.HTTPError, OSError) as failure:  # TimeoutError is an OSError
            error = f"{type(failure).__name__}: {failure}"
        except Exception as failure:  # recorded like any failed attempt, and retried
            logger.exception("outgoing delivery %s failed unexpectedly", delivery.pk)
            error = f"{type(failure).__name__}: {failure}"
    duration_ms = int((time.monotonic() - started) * 1000)
    return _record(
        delivery=delivery,
        headers=headers,
        status=status,
        answer=answer,
        error=error,
        duration_ms=duration_ms,
        final=not endpoint.enabled or endpoint.deleted_at is not None,
    )


def _record(*, delivery, headers, status, answer, error, duration_ms, final) -> str:
    now = timezone.now()
    with transaction.atomic():
        row = OutgoingDelivery.objects.select_for_update(of=("self",)).get(pk=delivery.pk)
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=row.endpoint_id)
        row.request_headers = headers
        row.response_status = status
        row.response_body = answer.decode("utf-8", errors="replace").replace("\x00", "\\u0000")[:RESPONSE_BODY_MAX]
        row.duration_ms = duration_ms
        row.error = error[:ERROR_MAX]
        if not error:
            row.status, row.next_attempt_at = Status.SUCCEEDED, None
            if endpoint.failing_since is not None:
                endpoint.failing_since = None
                endpoint.save(update_fields=["failing_since"])
        else:
            retry_at = row.last_attempt_at + timedelta(seconds=backoff_seconds(row.attempts))
            if final or retry_at > row.retry_until:
                row.status, row.next_attempt_at = Status.FAILED, None
            else:
                row.next_attempt_at = retry_at
            if not final:
                _endpoint_failed(endpoint=endpoint, now=now)
        row.save()
    return row.status


def _endpoint_failed(*, endpoint: WebhookEndpoint, now) -> None:
    """Note the failure; an endpoint failing (no success) for longer than the setting's days is
    disabled, audited and support is e-mailed."""
    if endpoint.failing_since is None:
        endpoint.failing_since = now
        endpoint.save(update_fields=["failing_since"])
        return
    days = settings.OFFERHUB_WEBHOOKS_DISABLE_AFTER_DAYS
    if not endpoint.enabled or now - endpoint.failing_since < timedelta(days=days):
        return
    reason = f"every delivery failed since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC (over {days} days)"
    webhook_endpoint_set_enabled(
        endpoint=endpoint, enabled=False, reason=reason, actor_type=AuditLog.ActorType.SYSTEM, actor_id="webhooks"
    )
    _tell_support(endpoint=endpoint, reason=reason)


def _tell_support(*, endpoint: WebhookEndpoint, reason: str) -> None:
    recipients = list(
        get_user_model()
        .objects.filter(is_staff=True, is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)[:50]
    )
    if not recipients:
        return
    subject = f"Webhook endpoint {endpoint.id} disabled"
    message = (
        f"The webhook endpoint {endpoint.id} ({endpoint.url}) of marketplace "
        f"{endpoint.marketplace_id or '(platform)'} was disabled: {reason}.\n\n"
        f"{settings.SITE_URL}{reverse('admin:hooks_webhookendpoint_change', args=[quote(endpoint.pk)])}\n"
    )
    transaction.on_commit(lambda: send_mail(subject, message, None, recipients, fail_silently=True), robust=True)


def deliveries_due_claim(*, limit: int = 100) -> list[int]:
    """Pending deliveries whose time has come, skipping rows another worker holds. Queuing one
    twice is harmless: only one attempt can claim it."""
    with transaction.atomic():
        due = (
            OutgoingDelivery.objects.select_for_update(skip_locked=True)
            .filter(status=Status.PENDING, next_attempt_at__lte=timezone.now())
            .order_by("next_attempt_at")
            .only("pk")[:limit]
        )
        return [delivery.pk for delivery in due]


def delivery_resend(*, delivery: OutgoingDelivery, actor_id: str) -> OutgoingDelivery:
    """Support's "Re-send": a failed (or already delivered) delivery is queued once more, with a
    new retry window; audited with the staff user."""
    with transaction.atomic():
        row = OutgoingDelivery.objects.select_for_update().select_related("endpoint").get(pk=delivery.pk)
        if row.status == Status.PENDING:
            raise ServiceError("INVALID_STATE", "This delivery is still being attempted.")
        if not row.endpoint.enabled:
            raise ServiceError("INVALID_STATE", "Enable the endpoint before re-sending to it.")
        before = {"status": row.status, "attempts": row.attempts}
        now = timezone.now()
        row.status, row.next_attempt_at, row.retry_until = Status.PENDING, now, now + RETRY_WINDOW
        row.save(update_fields=["status", "next_attempt_at", "retry_until", "updated_at"])
        audit_record(
            action="webhook_delivery.resent",
            resource_type="OutgoingDelivery",
            resource_id=row.public_id,
            actor_type=AuditLog.ActorType.SUPPORT,
            actor_id=actor_id,
            payload_before=before,
            payload_after={"status": row.status, "eventId": row.event_id, "endpointId": row.endpoint_id},
            marketplace_id=row.endpoint.marketplace_id,
        )
        _send_later([row.pk])
    return row


def deliveries_resend_failed(*, endpoint: WebhookEndpoint, actor_id: str) -> int:
    """Re-send every failed delivery of an endpoint."""
    count = 0
    for delivery in OutgoingDelivery.objects.filter(endpoint=endpoint, status=Status.FAILED).order_by("created_at"):
        delivery_resend(delivery=delivery, actor_id=actor_id)
        count += 1
    return count
