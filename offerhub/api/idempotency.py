"""Idempotency-Key (API.md §1.4): durable, per API key, fingerprinted, atomic across nodes.

The record is inserted and committed before the handler runs, so the unique index
is the claim every web node sees. The handler then runs in one transaction that
holds the record's row lock, writes its effects and stores the response: a second
request meeting that lock answers IN_PROGRESS however slow the first is; a crash
rolls everything back and frees the lock, and a retry runs the request once more
from scratch instead of finding half of it done.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, OperationalError, transaction
from django.http import HttpResponse
from django.utils import timezone

from offerhub.api.errors import validation_error
from offerhub.errors import ServiceError
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
    except (ValueError, UnicodeDecodeError, RecursionError):
        canonical = body  # malformed or absurdly nested JSON still fingerprints; the handler answers 400
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
    lookup = {"principal_id": principal_id, "key": key}
    for _attempt in range(3):
        try:
            with transaction.atomic():
                return IdempotencyStart(record=IdempotencyRecord.objects.create(**lookup, **fresh))
        except IntegrityError:
            pass
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.select_for_update(nowait=True).filter(**lookup).first()
                if record is None:
                    continue  # released meanwhile (a 5xx): claim it afresh
                return _settle_existing(record, fresh, now)
        except OperationalError:
            # A live request holds the record's row lock for the whole of its handler.
            holder = IdempotencyRecord.objects.filter(**lookup).values_list("fingerprint", flat=True).first()
            raise _reused(key) if holder is not None and holder != fingerprint else _in_progress(key) from None
    raise _in_progress(key)


def _reused(key: str) -> ServiceError:
    return ServiceError(
        "IDEMPOTENCY_KEY_REUSED",
        "This Idempotency-Key was already used for a different request",
        details={"idempotency_key": key},
    )


def _in_progress(key: str) -> ServiceError:
    return ServiceError(
        "IDEMPOTENCY_KEY_IN_PROGRESS",
        "A request with this Idempotency-Key is still being processed; retry later",
        details={"idempotency_key": key},
    )


def _settle_existing(record: IdempotencyRecord, fresh: dict, now) -> IdempotencyStart:
    if record.expires_at is not None and record.expires_at <= now:
        return IdempotencyStart(record=_take_over(record, fresh))
    if record.fingerprint != fresh["fingerprint"]:
        raise _reused(record.key)
    if record.status == IdempotencyRecord.Status.COMPLETED:
        return IdempotencyStart(replay=_replay(record))
    if record.locked_until and record.locked_until > now:
        # Just claimed: its holder has not taken the row lock yet.
        raise _in_progress(record.key)
    # PROCESSING, unlocked and past its claim window: the holder died and its
    # transaction rolled back with it, so nothing ran. Run it now.
    return IdempotencyStart(record=_take_over(record, fresh))


def idempotency_lock(*, record: IdempotencyRecord) -> None:
    """Hold the record's row lock for the caller's transaction: the proof that it is alive."""
    IdempotencyRecord.objects.select_for_update().filter(pk=record.pk).first()


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
