"""Outgoing webhooks (API.md §14): the marketplace's endpoints and one delivery per (endpoint, event)."""

import secrets

from django.db import models
from django.utils import timezone

from offerhub.ids import public_id
from offerhub.timefmt import iso_timestamp

SECRET_PREFIX = "whsec_"  # noqa: S105  (a prefix, not a secret)
RESPONSE_BODY_MAX = 2000  # what is kept of a receiver's answer
ERROR_MAX = 500


def new_endpoint_id() -> str:
    return public_id("whe_")


def new_delivery_id() -> str:
    return public_id("whd_")


def new_endpoint_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


class WebhookEndpoint(models.Model):
    """A URL of the marketplace that hears of its tenant's events. The secret signs every delivery;
    it is kept in clear (signing needs it) and shown to the API caller only once, at creation."""

    id = models.CharField(primary_key=True, max_length=40, default=new_endpoint_id, editable=False)
    url = models.URLField(max_length=2048)
    description = models.CharField(max_length=255, blank=True)
    events = models.JSONField(default=list, help_text='Event types or wildcards: ["order.*"], ["*"]')
    secret = models.CharField(max_length=80, default=new_endpoint_secret, editable=False)
    marketplace_id = models.CharField(max_length=100, blank=True, db_index=True)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=255, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    # First failed attempt since the last success: an endpoint failing longer than
    # OFFERHUB_WEBHOOKS_DISABLE_AFTER_DAYS is disabled and support told.
    failing_since = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=100, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    deleted_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "webhook endpoint"

    def __str__(self):
        return f"{self.id} {self.url}"

    def as_api(self) -> dict:
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "description": self.description,
            "enabled": self.enabled,
            "disabledReason": self.disabled_reason or None,
            "createdAt": iso_timestamp(self.created_at),
        }


class OutgoingDelivery(models.Model):
    """One event to one endpoint, retried until a 2xx or the retry window ends. The last attempt's
    request and (bounded) response are kept for support."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    public_id = models.CharField(max_length=40, unique=True, default=new_delivery_id, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.CharField(max_length=40)
    event_type = models.CharField(max_length=100)
    body = models.TextField(help_text="The DomainEvent as sent, byte for byte")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    retry_until = models.DateTimeField(help_text="No retry is scheduled past this (3 days from creation or re-send)")
    request_headers = models.JSONField(default=dict, blank=True)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=ERROR_MAX, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "outgoing webhook delivery"
        verbose_name_plural = "outgoing webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event_id"], name="outgoing_delivery_once_per_endpoint")
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"], name="outgoing_delivery_due_idx", condition=models.Q(status="pending")
            )
        ]

    def __str__(self):
        return f"{self.public_id} {self.event_type} → {self.endpoint_id} ({self.status})"

    def as_api(self) -> dict:
        return {
            "id": self.public_id,
            "eventId": self.event_id,
            "eventType": self.event_type,
            "attempt": self.attempts,
            "status": self.status,
            "responseStatus": self.response_status,
            "nextAttemptAt": iso_timestamp(self.next_attempt_at) if self.status == self.Status.PENDING else None,
            "createdAt": iso_timestamp(self.created_at),
        }
