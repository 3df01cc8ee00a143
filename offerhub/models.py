"""Platform records shared by every app: audit log, event outbox, API keys, idempotency."""

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from offerhub.ids import new_api_key_id, new_audit_id, new_event_id
from offerhub.timefmt import iso_timestamp


class AppendOnlyError(Exception):
    """Raised when code tries to change or remove an append-only row."""


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only and cannot be updated.")

    def delete(self):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only and cannot be deleted.")


class AuditLog(models.Model):
    """One row per mutation, never changed afterwards (PostgreSQL enforces it with a trigger too)."""

    class Result(models.TextChoices):
        SUCCESS = "SUCCESS"
        FAILURE = "FAILURE"
        DISCREPANCY_FOUND = "DISCREPANCY_FOUND"

    class ActorType(models.TextChoices):
        API_KEY = "API_KEY"
        USER = "USER"
        SUPPORT = "SUPPORT"
        SYSTEM = "SYSTEM"
        WEBHOOK = "WEBHOOK"

    public_id = models.CharField(max_length=40, unique=True, default=new_audit_id, editable=False)
    occurred_at = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=100, db_index=True)
    resource_type = models.CharField(max_length=50)
    resource_id = models.CharField(max_length=100, blank=True)
    payload_before = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    payload_after = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    actor_type = models.CharField(max_length=20, choices=ActorType.choices)
    actor_id = models.CharField(max_length=100)
    result = models.CharField(max_length=20, choices=Result.choices, default=Result.SUCCESS)
    correlation_id = models.CharField(max_length=128, blank=True, db_index=True)
    user_id = models.CharField(max_length=40, blank=True, db_index=True)
    idempotency_key = models.CharField(max_length=255, blank=True)
    marketplace_id = models.CharField(max_length=100, blank=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [models.Index(fields=["resource_type", "resource_id"])]

    def __str__(self):
        return f"{self.public_id} {self.action} {self.resource_type}:{self.resource_id} ({self.result})"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("AuditLog rows are append-only and cannot be updated.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("AuditLog rows are append-only and cannot be deleted.")

    def as_api(self) -> dict:
        return {
            "id": self.public_id,
            "occurredAt": iso_timestamp(self.occurred_at),
            "action": self.action,
            "resourceType": self.resource_type,
            "resourceId": self.resource_id,
            "payloadBefore": self.payload_before,
            "payloadAfter": self.payload_after,
            "actorType": self.actor_type,
            "actorId": self.actor_id,
            "result": self.result,
            "correlationId": self.correlation_id,
            "userId": self.user_id or None,
            "idempotencyKey": self.idempotency_key or None,
        }


class Event(models.Model):
    """Transactional outbox: written with the change it describes, dispatched after commit."""

    id = models.BigAutoField(primary_key=True)  # insert order, not commit order
    event_id = models.CharField(max_length=40, unique=True, default=new_event_id, editable=False)
    type = models.CharField(max_length=100, db_index=True)
    aggregate_type = models.CharField(max_length=50)
    aggregate_id = models.CharField(max_length=100)
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    correlation_id = models.CharField(max_length=128, blank=True)
    causation_id = models.CharField(max_length=128, blank=True)
    user_id = models.CharField(max_length=40, blank=True, db_index=True)
    marketplace_id = models.CharField(max_length=100, blank=True)
    occurred_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Commit order: given after commit by the one serialized sequencer (offerhub.events.events_sequence),
    # so a reader of "position > my cursor" never skips an event that committed late.
    position = models.BigIntegerField(null=True, blank=True, unique=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)  # when it got its position

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["aggregate_type", "aggregate_id"]),
            models.Index(fields=["dispatched_at", "id"], name="event_undispatched_idx"),
            models.Index(fields=["id"], condition=models.Q(position__isnull=True), name="event_unsequenced_idx"),
        ]

    def __str__(self):
        return f"{self.event_id} {self.type} {self.aggregate_type}:{self.aggregate_id}"

    def as_domain_event(self) -> dict:
        metadata = {
            key: value
            for key, value in (
                ("correlationId", self.correlation_id),
                ("causationId", self.causation_id),
                ("userId", self.user_id),
                ("marketplaceId", self.marketplace_id),
            )
            if value
        }
        return {
            "eventId": self.event_id,
            "eventType": self.type,
            "occurredAt": iso_timestamp(self.occurred_at),
            "aggregateId": self.aggregate_id,
            "aggregateType": self.aggregate_type,
            "payload": self.payload,
            "metadata": metadata,
        }


class ApiKey(models.Model):
    """An integrator's credential. Only a salted hash of the secret is kept."""

    id = models.CharField(primary_key=True, max_length=40, default=new_api_key_id, editable=False)
    name = models.CharField(max_length=100)
    environment = models.CharField(max_length=4, choices=[("live", "live"), ("test", "test")])
    scopes = models.JSONField(default=list)
    marketplace_id = models.CharField(max_length=100, blank=True)
    secret_salt = models.CharField(max_length=32, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    created_by = models.CharField(max_length=100, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API key"

    def __str__(self):
        state = " (revoked)" if self.revoked_at else ""
        return f"{self.name} [{self.id}]{state}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def as_api(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "scopes": list(self.scopes),
            "marketplaceId": self.marketplace_id or None,
            "lastUsedAt": iso_timestamp(self.last_used_at),
            "createdAt": iso_timestamp(self.created_at),
            "revokedAt": iso_timestamp(self.revoked_at),
        }


class IdempotencyRecord(models.Model):
    """One Idempotency-Key of one API key: its lock while running, its response once finished."""

    class Status(models.TextChoices):
        PROCESSING = "PROCESSING"
        COMPLETED = "COMPLETED"

    principal_id = models.CharField(max_length=40)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PROCESSING)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.BinaryField(null=True, blank=True)
    response_content_type = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    locked_until = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)  # null: kept indefinitely

    class Meta:
        constraints = [models.UniqueConstraint(fields=["principal_id", "key"], name="idempotency_key_per_principal")]

    def __str__(self):
        return f"{self.principal_id}:{self.key} {self.method} {self.path} ({self.status})"


class WebhookDelivery(models.Model):
    """One request received on a provider webhook endpoint (API.md §13), kept whatever became of it.

    Deliveries are deduplicated on `(provider, event_id)` among the authenticated ones only: an
    unsigned or forged request must never claim an event id and make the real delivery a duplicate.
    """

    class Provider(models.TextChoices):
        AIRTM = "airtm", "Airtm"
        TRUSTLESS_WORK = "trustless_work", "Trustless Work"

    class Status(models.TextChoices):
        RECEIVED = "RECEIVED"  # stored, its processing queued
        PROCESSED = "PROCESSED"
        IGNORED = "IGNORED"  # unsigned, unverifiable, unknown type or nothing to apply it to
        REJECTED = "REJECTED"  # wrong signature or stale timestamp: answered 401
        FAILED = "FAILED"  # processing raised; retried with back-off

    provider = models.CharField(max_length=20, choices=Provider.choices)
    event_id = models.CharField(max_length=255, blank=True)
    event_type = models.CharField(max_length=100, blank=True)
    # Signature verified (or OFFERHUB_WEBHOOKS_INSECURE): only these are ever processed.
    authenticated = models.BooleanField(default=False)
    body = models.TextField(blank=True, help_text="the raw body as received (truncated when rejected)")
    headers = models.JSONField(default=dict, blank=True, help_text="the provider's headers, bounded")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    note = models.CharField(max_length=255, blank=True, help_text="why it was ignored or rejected")
    duplicates = models.PositiveIntegerField(default=0, help_text="the same event delivered again")
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name = "provider webhook delivery"
        verbose_name_plural = "provider webhook deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "event_id"],
                condition=~models.Q(event_id="") & models.Q(authenticated=True),
                name="webhook_delivery_once_per_event",
            )
        ]
        indexes = [models.Index(fields=["status", "updated_at"], name="webhook_delivery_due_idx")]

    def __str__(self):
        return f"{self.get_provider_display()} {self.event_type or '?'} {self.event_id or '(no id)'} ({self.status})"


class SubscriberCursor(models.Model):
    """How far one event subscriber got: it has handled every event up to `position`.

    Claimed with SELECT … FOR UPDATE SKIP LOCKED, so one worker at a time runs a subscriber."""

    name = models.CharField(max_length=200, unique=True)
    position = models.BigIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)  # consecutive, on the event after `position`
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return f"{self.name} @ {self.position}"


class EventDeadLetter(models.Model):
    """An event one subscriber failed on too often: parked, so the subscriber goes on with the next.

    Support retries it from the admin; `resolved_at` is set once the subscriber took it."""

    subscriber = models.CharField(max_length=200)
    event = models.ForeignKey(Event, on_delete=models.PROTECT, related_name="dead_letters")
    failures = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    retried_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["subscriber", "event"], name="event_dead_letter_unique")]

    def __str__(self):
        return f"{self.subscriber} · {self.event.event_id}"


class EmailNotification(models.Model):
    """One e-mail an event calls for, written by its subscriber (once per `key`: eventId and kind)
    and sent by a Celery task, which sets `sent_at`; the sweeper re-queues unsent ones.

    A sender claims the row (`claimed_until`, the database's clock) and commits before it talks
    to the mail server: another sender skips it while the claim lasts, and the sweeper takes
    it up again once a claim left by a killed sender has lapsed."""

    key = models.CharField(max_length=120, unique=True)
    event_id = models.CharField(max_length=40, db_index=True)
    recipients = models.JSONField(default=list)
    subject = models.CharField(max_length=300)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)  # a sender is at it until then

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["created_at"], condition=models.Q(sent_at__isnull=True), name="email_unsent_idx")
        ]

    def __str__(self):
        return f"{self.key} → {', '.join(self.recipients)}"


class JobLease(models.Model):
    """Who runs a periodic job, or holds a lock (offerhub.locks: `escrow:<pk>`,
    `stellar-account:<address>`), right now, across every worker and beat (offerhub.leases).

    Claimed with one INSERT … ON CONFLICT … WHERE expired-or-ours statement, renewed as the work
    progresses and released at its end; a holder killed mid-run is taken over once it expires.
    `claims` counts the claims: a claim's count is its fencing token. A row, not an advisory
    lock: it works behind a transaction-pooling PgBouncer."""

    name = models.CharField(max_length=100, primary_key=True)
    holder = models.CharField(max_length=200, blank=True)  # "" once released
    claimed_at = models.DateTimeField()
    renewed_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)
    claims = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return f"{self.name} · {self.holder or 'free'} until {self.expires_at:%Y-%m-%d %H:%M:%S}"
