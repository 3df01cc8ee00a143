"""Provider webhook ingress (API.md §13): verify, store, dedupe, and process in a Celery task.

Provider-agnostic plumbing. The views hand over the raw bytes; this module checks the signature
over them before anything is parsed, stores one `WebhookDelivery` per request and queues its
processing after commit. What a delivery *means* is decided by processors that live in their
apps and register here with `@webhook_processor(provider, event_types)` (escrow.webhooks for
Trustless Work). A processor never trusts the body to move money: it re-reads the provider.
"""

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from svix.webhooks import Webhook, WebhookVerificationError

from offerhub.errors import ServiceError
from offerhub.models import AuditLog, WebhookDelivery
from offerhub.services import audit_record

logger = logging.getLogger(__name__)

Provider = WebhookDelivery.Provider
Status = WebhookDelivery.Status

AIRTM_EVENT_TYPES = frozenset(
    {
        "payin.created",
        "payin.awaiting_user_confirmation",
        "payin.processing",
        "payin.confirmed",
        "payin.succeeded",
        "payin.failed",
        "payin.canceled",
        "payout.created",
        "payout.committed",
        "payout.pending",
        "payout.pending_user_action",
        "payout.completed",
        "payout.failed",
        "payout.canceled",
    }
)
TRUSTLESS_WORK_EVENT_TYPES = frozenset(
    {
        "escrow.created",
        "escrow.funding_started",
        "escrow.funded",
        "escrow.milestone_completed",
        "escrow.released",
        "escrow.refunded",
        "escrow.disputed",
    }
)
EVENT_TYPES = {Provider.AIRTM: AIRTM_EVENT_TYPES, Provider.TRUSTLESS_WORK: TRUSTLESS_WORK_EVENT_TYPES}

# Headers kept with a delivery (never a secret: the signature is a MAC of this body, not the key).
KEPT_HEADERS = {
    Provider.AIRTM: ("svix-id", "svix-timestamp", "svix-signature", "content-type", "user-agent"),
    Provider.TRUSTLESS_WORK: ("x-tw-signature", "content-type", "user-agent"),
}
SIGNATURE_HEADERS = {
    Provider.AIRTM: ("svix-signature", "webhook-signature"),
    Provider.TRUSTLESS_WORK: ("x-tw-signature",),
}
HEADER_MAX = 500
REJECTED_BODY_MAX = 2000

# Processing: retried with back-off by the task, then by the sweeper until MAX_ATTEMPTS; after
# that the row stays FAILED for support to "Process again".
MAX_ATTEMPTS = 8
SWEEP_AFTER = timedelta(minutes=1)  # RECEIVED/FAILED untouched this long lost its task


class WebhookIgnored(Exception):
    """Raised by a processor: the delivery applies to nothing of ours (stored as IGNORED, with why)."""


@dataclass(frozen=True)
class WebhookProcessor:
    provider: str
    event_types: frozenset
    process: Callable  # process(*, delivery, payload) -> None; raises WebhookIgnored or fails
    # check(*, payload) -> "" or why it does not apply: answered synchronously as `processed`.
    check: Callable | None = None


PROCESSORS: dict[tuple[str, str], WebhookProcessor] = {}


def webhook_processor(provider: str, event_types, *, check: Callable | None = None):
    """Register the decorated `process(*, delivery, payload)` for these event types of a provider."""

    def register(process):
        processor = WebhookProcessor(
            provider=provider, event_types=frozenset(event_types), process=process, check=check
        )
        for event_type in processor.event_types:
            PROCESSORS[(provider, event_type)] = processor
        return process

    return register


# --- Receiving ------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What the signature check concluded, before anything is parsed."""

    authenticated: bool
    rejected: bool = False
    note: str = ""


def _header(headers, name: str) -> str:
    return headers.get(name) or ""


def _signed(provider: str, headers) -> bool:
    return any(_header(headers, name) for name in SIGNATURE_HEADERS[provider])


def _unverified(secret_problem: str) -> Verdict:
    if settings.OFFERHUB_WEBHOOKS_INSECURE:
        return Verdict(authenticated=True, note=f"{secret_problem}; accepted unverified (OFFERHUB_WEBHOOKS_INSECURE)")
    return Verdict(authenticated=False, note=f"{secret_problem}: not processed")


def _verify_airtm(raw: bytes, headers) -> Verdict:
    secret = settings.OFFERHUB_AIRTM_WEBHOOK_SECRET
    if not secret:
        return _unverified("OFFERHUB_AIRTM_WEBHOOK_SECRET is not configured")
    if not _signed(Provider.AIRTM, headers):
        return Verdict(authenticated=False, note="unsigned")
    try:
        verifier = Webhook(secret)
    except Exception:  # a malformed secret is our misconfiguration, not the sender's fault
        logger.error("OFFERHUB_AIRTM_WEBHOOK_SECRET is not a valid Svix secret (whsec_<base64>)")
        return Verdict(authenticated=False, note="OFFERHUB_AIRTM_WEBHOOK_SECRET is invalid: not processed")
    names = ("svix-id", "svix-timestamp", "svix-signature", "webhook-id", "webhook-timestamp", "webhook-signature")
    try:
        # svix compares in constant time and refuses timestamps more than 5 minutes away.
        verifier.verify(raw, {name: _header(headers, name) for name in names if _header(headers, name)})
    except (WebhookVerificationError, ValueError) as error:  # ValueError: malformed entries, not UTF-8
        return Verdict(authenticated=False, rejected=True, note=f"signature: {error}"[:255])
    return Verdict(authenticated=True)


def _verify_trustless_work(raw: bytes, headers) -> Verdict:
    secret = settings.TRUSTLESS_WEBHOOK_SECRET
    if not secret:
        return _unverified("TRUSTLESS_WEBHOOK_SECRET is not configured")
    given = _header(headers, "x-tw-signature")
    if not given:
        return Verdict(authenticated=False, note="unsigned")
    expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.strip().encode("latin-1", "replace")):
        return Verdict(authenticated=False, rejected=True, note="signature: x-tw-signature does not match")
    return Verdict(authenticated=True)


VERIFIERS = {Provider.AIRTM: _verify_airtm, Provider.TRUSTLESS_WORK: _verify_trustless_work}


def _text(raw: bytes, limit: int | None = None) -> str:
    text = raw.decode("utf-8", errors="replace").replace("\x00", "\\u0000")  # PostgreSQL text holds no NUL
    return text if limit is None else text[:limit]


def _kept_headers(provider: str, headers) -> dict:
    return {name: _header(headers, name)[:HEADER_MAX] for name in KEPT_HEADERS[provider] if _header(headers, name)}


def _identify(provider: str, payload, headers) -> tuple[str, str]:
    """(event id, event type) from the provider's body shapes; '' where absent."""
    body = payload if isinstance(payload, dict) else {}

    def text(value) -> str:
        return value if isinstance(value, str) else ""

    if provider == Provider.AIRTM:
        event_id = _header(headers, "svix-id") or text(body.get("eventId"))
        event_type = text(body.get("type")) or text(body.get("eventType"))
    else:
        event_id, event_type = text(body.get("event_id")), text(body.get("type"))
    return event_id[:255], event_type[:100]


@dataclass(frozen=True)
class Receipt:
    """What the endpoint answers: 401 when `rejected`, else 200 with `processed` or `duplicate`."""

    delivery: WebhookDelivery
    processed: bool = False
    duplicate: bool = False
    rejected: bool = False


def webhook_receive(*, provider: str, raw_body: bytes, headers, parse: Callable) -> Receipt:
    """Verify `raw_body` as received, store it, and queue its processing after commit.

    `parse(raw_body)` turns the bytes into JSON and raises the API's 400 on a bad body; it runs
    only once the signature holds (an unauthenticated body is stored as text, never trusted).
    Runs inside the caller's transaction."""
    verdict = VERIFIERS[provider](raw_body, headers)
    kept = _kept_headers(provider, headers)
    if verdict.rejected:
        delivery = WebhookDelivery.objects.create(
            provider=provider,
            event_id=_header(headers, "svix-id")[:255] if provider == Provider.AIRTM else "",
            headers=kept,
            body=_text(raw_body, REJECTED_BODY_MAX),
            status=Status.REJECTED,
            note=verdict.note,
        )
        logger.warning("webhook %s rejected: %s", provider, verdict.note)
        return Receipt(delivery=delivery, rejected=True)
    if not verdict.authenticated:
        try:
            payload = json.loads(raw_body)
        except ValueError:
            payload = None
        event_id, event_type = _identify(provider, payload, headers)
        delivery = WebhookDelivery.objects.create(
            provider=provider,
            event_id=event_id,
            event_type=event_type,
            headers=kept,
            body=_text(raw_body),
            status=Status.IGNORED,
            note=verdict.note[:255],
        )
        return Receipt(delivery=delivery)

    payload = parse(raw_body)  # a 400 here stores nothing: the provider sees its own mistake
    event_id, event_type = _identify(provider, payload, headers)
    status, note = Status.RECEIVED, verdict.note
    processor = PROCESSORS.get((provider, event_type))
    if event_type not in EVENT_TYPES[provider]:
        status, note = Status.IGNORED, f"unknown event type {event_type!r}" if event_type else "no event type"
    elif processor is None:
        status, note = Status.IGNORED, "no processor yet"
    elif processor.check is not None:
        reason = processor.check(payload=payload)
        if reason:
            status, note = Status.IGNORED, reason
    if event_id:
        try:
            with transaction.atomic():  # a savepoint: the unique constraint settles concurrent copies
                delivery = _store(provider, event_id, event_type, kept, raw_body, status, note)
        except IntegrityError:
            return _duplicate(provider, event_id)
    else:
        delivery = _store(provider, event_id, event_type, kept, raw_body, status, note)
    if status == Status.RECEIVED:
        webhook_process_later(delivery)
    return Receipt(delivery=delivery, processed=status == Status.RECEIVED)


def _store(provider, event_id, event_type, kept, raw_body, status, note) -> WebhookDelivery:
    return WebhookDelivery.objects.create(
        provider=provider,
        event_id=event_id,
        event_type=event_type,
        authenticated=True,
        headers=kept,
        body=_text(raw_body),
        status=status,
        note=note[:255],
    )


def _duplicate(provider: str, event_id: str) -> Receipt:
    delivery = (
        WebhookDelivery.objects.select_for_update()
        .filter(provider=provider, event_id=event_id, authenticated=True)
        .get()
    )
    delivery.duplicates += 1
    delivery.save(update_fields=["duplicates", "updated_at"])
    return Receipt(delivery=delivery, duplicate=True)


# --- Processing -----------------------------------------------------------------------


def webhook_process_later(delivery: WebhookDelivery) -> None:
    """Queue the delivery's processing once the caller commits (the sweeper covers a lost queue)."""
    from offerhub.tasks import webhook_delivery_process

    pk = delivery.pk
    transaction.on_commit(lambda: webhook_delivery_process.delay(pk), robust=True)


def webhook_process(*, delivery_pk: int) -> str:
    """Apply one delivery, once: returns its status afterwards. The row is locked while its
    processor runs, and a PROCESSED or IGNORED one is left alone, so a copy queued twice is a no-op.
    A processor's failure rolls back its own writes only and is recorded as FAILED (the caller
    retries); it is re-raised as ProcessingFailed."""
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().filter(pk=delivery_pk).first()
        if delivery is None or not delivery.authenticated:
            return "missing" if delivery is None else delivery.status
        if delivery.status not in (Status.RECEIVED, Status.FAILED):
            return delivery.status
        delivery.attempts += 1
        processor = PROCESSORS.get((delivery.provider, delivery.event_type))
        error = None
        if processor is None:
            delivery.status, delivery.note = Status.IGNORED, "no processor yet"
        else:
            try:
                with transaction.atomic():
                    processor.process(delivery=delivery, payload=json.loads(delivery.body))
            except WebhookIgnored as ignored:
                delivery.status, delivery.note = Status.IGNORED, str(ignored)[:255]
            except Exception as failure:  # recorded on the row; the task retries
                logger.exception("webhook delivery %s failed", delivery.pk)
                error = failure
                delivery.status, delivery.last_error = Status.FAILED, f"{type(failure).__name__}: {failure}"[:2000]
            else:
                delivery.status, delivery.processed_at = Status.PROCESSED, timezone.now()
        delivery.save()
    if error is not None:
        raise ProcessingFailed(delivery.attempts) from error
    return delivery.status


class ProcessingFailed(Exception):
    """A processor raised; the delivery is FAILED with `attempts` made so far."""

    def __init__(self, attempts: int):
        super().__init__(f"processing failed (attempt {attempts})")
        self.attempts = attempts


def webhook_deliveries_due_claim(*, limit: int) -> list[int]:
    """Deliveries the sweeper should queue again: RECEIVED or FAILED, untouched for SWEEP_AFTER
    (their task was lost, or its retries ran out), under MAX_ATTEMPTS. Each is claimed by a
    conditional UPDATE of its `updated_at`, so two sweeps never queue the same one twice."""
    now = timezone.now()
    due = WebhookDelivery.objects.filter(
        status__in=(Status.RECEIVED, Status.FAILED),
        authenticated=True,
        attempts__lt=MAX_ATTEMPTS,
        updated_at__lt=now - SWEEP_AFTER,
    )
    claimed = []
    for pk, updated_at in due.order_by("updated_at").values_list("pk", "updated_at")[:limit]:
        if WebhookDelivery.objects.filter(pk=pk, updated_at=updated_at).update(updated_at=now):
            claimed.append(pk)
    return claimed


def webhook_delivery_reprocess(*, delivery: WebhookDelivery, actor_id: str) -> WebhookDelivery:
    """Support's "Process again": an authenticated delivery that was ignored (no processor yet,
    an order unknown then) or failed is queued once more, audited with the staff user.
    A processed one is not: processing is once."""
    with transaction.atomic():
        locked = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        if not locked.authenticated:
            raise ServiceError(
                "INVALID_STATE", "This delivery's signature was not verified: it can never be processed."
            )
        if locked.status not in (Status.IGNORED, Status.FAILED):
            raise ServiceError(
                "INVALID_STATE", f"Only ignored or failed deliveries can be processed again, not {locked.status}."
            )
        before = {"status": locked.status, "attempts": locked.attempts, "note": locked.note}
        locked.status, locked.note = Status.RECEIVED, ""
        locked.save(update_fields=["status", "note", "updated_at"])
        audit_record(
            action="webhook_delivery.reprocess",
            resource_type="webhook_delivery",
            resource_id=str(locked.pk),
            actor_type=AuditLog.ActorType.SUPPORT,
            actor_id=actor_id,
            payload_before=before,
            payload_after={"status": locked.status},
        )
        webhook_process_later(locked)
    return locked
