"""Idempotency-Key (API.md §1.4): durable, per API key, fingerprinted, atomic across nodes.

The record is inserted and committed before the handler runs, so the unique index
is the lock every web node sees. The handler's writes and the stored response then
commit together: a crash in between rolls both back, and a retry runs the request
once more from scratch instead of finding half of it done.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.utils import timezone

from offerhub.api.errors import ApiError, validation_error
from offerhub.models import IdempotencyRecord

HEADER = "Idempotency-Key"
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Responses that describe the caller or the lock, not the operation: never replayed.
UNSTORED_STATUSES = frozenset({401, 403, 429})
UNSTORED_CODES = frozenset({"IDEMPOTENCY_KEY_REUSED", "IDEMPOTENCY_KEY_IN_PROGRESS"})

RETENTION_DEFAULT = timedelta(hours=24)
RETENTION_ORDERS = timedelta(days=7)
RETENTION_FOREVER = None


@dataclass
class IdempotencyStart:
    record: IdempotencyRecord | None = None
    replay: HttpResponse | None = None


def _valid_key(value: str) -> bool:
    return 1 <= len(value) <= 255 and all(0x21 <= ord(char) <= 0x7E for char in value)


def request_fingerprint(*, method: str, path: str, query: str, body: bytes) -> str:
    """Method + path + query + canonical JSON body; an empty body counts as `{}`."""
    try:
        parsed = json.loads(body) if body.strip() else {}
        canonical = json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = body  # malformed JSON still fingerprints; the handler answers 400
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), query.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _replay(record: IdempotencyRecord) -> HttpResponse:
    response = HttpResponse(
        bytes(record.response_body or b""),
        status=record.response_status,
        content_type=record.response_content_type or "application/json",
    )
    response["Idempotency-Replay"] = "true"
    return response


def idempotency_start(*, request, principal_id: str, retention: timedelta | None, exempt: bool) -> IdempotencyStart:
    """Claim the request's key, or answer with the stored response or a 409."""
    if request.method not in MUTATING_METHODS:
        return IdempotencyStart()
    key = request.headers.get(HEADER)
    if key is None:
        if settings.OFFERHUB_IDEMPOTENCY_REQUIRED and not exempt:
            raise validation_error(
                [(HEADER, "header is required on this request")],
                message="Idempotency-Key header is required",
                details={"header": HEADER, "reason": "missing"},
            )
        return IdempotencyStart()
    if not _valid_key(key):
        raise validation_error(
            [(HEADER, "must be 1-255 printable ASCII characters")],
            message="Invalid Idempotency-Key header",
            details={"header": HEADER, "reason": "invalid"},
        )

    fingerprint = request_fingerprint(
        method=request.method, path=request.path, query=request.META.get("QUERY_STRING", ""), body=request.body
    )
    now = timezone.now()
    fresh = {
        "fingerprint": fingerprint,
        "method": request.method,
        "path": request.path[:500],
        "status": IdempotencyRecord.Status.PROCESSING,
        "response_status": None,
        "response_body": None,
        "response_content_type": "",
        "locked_until": now + timedelta(seconds=settings.OFFERHUB_IDEMPOTENCY_LOCK_SECONDS),
        "expires_at": now + retention if retention is not None else None,
    }
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(principal_id=principal_id, key=key, **fresh)
        return IdempotencyStart(record=record)
    except IntegrityError:
        pass

    with transaction.atomic():
        record = IdempotencyRecord.objects.select_for_update().get(principal_id=principal_id, key=key)
        if record.expires_at is not None and record.expires_at <= now:
            return IdempotencyStart(record=_take_over(record, fresh))
        if record.fingerprint != fingerprint:
            raise ApiError(
                "IDEMPOTENCY_KEY_REUSED",
                "This Idempotency-Key was already used for a different request",
                details={"idempotency_key": key},
            )
        if record.status == IdempotencyRecord.Status.COMPLETED:
            return IdempotencyStart(replay=_replay(record))
        if record.locked_until and record.locked_until > now:
            raise ApiError(
                "IDEMPOTENCY_KEY_IN_PROGRESS",
                "A request with this Idempotency-Key is still being processed; retry later",
                details={"idempotency_key": key},
            )
        # The holder died without finishing; its transaction rolled back, so run again.
        return IdempotencyStart(record=_take_over(record, fresh))


def _take_over(record: IdempotencyRecord, fresh: dict) -> IdempotencyRecord:
    for name, value in fresh.items():
        setattr(record, name, value)
    record.save()
    return record


def response_is_stored(response) -> bool:
    if response.status_code >= 500 or response.status_code in UNSTORED_STATUSES:
        return False
    data = getattr(response, "data", None)
    error = data.get("error") if isinstance(data, dict) else None
    return not (isinstance(error, dict) and error.get("code") in UNSTORED_CODES)


def idempotency_finish(*, record: IdempotencyRecord, response) -> None:
    """Store a rendered response for replay, or release the key (5xx: the client may retry)."""
    if response_is_stored(response):
        IdempotencyRecord.objects.filter(pk=record.pk).update(
            status=IdempotencyRecord.Status.COMPLETED,
            response_status=response.status_code,
            response_body=bytes(response.content),
            response_content_type=response.get("Content-Type", "application/json"),
            locked_until=None,
        )
    else:
        IdempotencyRecord.objects.filter(pk=record.pk).delete()
