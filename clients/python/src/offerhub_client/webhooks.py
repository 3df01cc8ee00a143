"""Verifying OfferHub's outgoing webhooks (API.md §14): `OfferHub-Signature: t=<unix seconds>,v1=<hex>`."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from .errors import OfferHubError

SIGNATURE_HEADER = "OfferHub-Signature"


class WebhookVerificationError(OfferHubError):
    """The signature header is missing, malformed, stale or does not match the payload."""


def compute_signature(payload: bytes, secret: str, timestamp: int) -> str:
    """The `v1` value: hex HMAC-SHA256 keyed with the endpoint secret over `"<t>.<raw body>"`."""
    message = f"{timestamp}.".encode() + payload
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_webhook(
    payload: bytes, header: str, secret: str, tolerance: int = 300, *, now: float | None = None
) -> dict[str, Any]:
    """Check a delivery and return its DomainEvent.

    `payload` is the raw request body (bytes, before any JSON parsing), `header` the value of
    `OfferHub-Signature`, `secret` the endpoint's `whsec_…`. Raises WebhookVerificationError when
    no `v1` matches (compared in constant time) or `t` is more than `tolerance` seconds away from now.
    Receivers should still dedupe on the event id: delivery is at least once.
    """
    if not isinstance(payload, bytes | bytearray):
        raise TypeError("payload must be the raw body as bytes")
    if not header:
        raise WebhookVerificationError("missing OfferHub-Signature header", code="WEBHOOK_SIGNATURE_INVALID")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                timestamp = None
        elif key == "v1" and value:
            signatures.append(value.strip())
    if timestamp is None or not signatures:
        raise WebhookVerificationError("malformed OfferHub-Signature header", code="WEBHOOK_SIGNATURE_INVALID")
    current = time.time() if now is None else now
    if tolerance is not None and abs(current - timestamp) > tolerance:
        raise WebhookVerificationError("signature timestamp outside the tolerance", code="WEBHOOK_SIGNATURE_INVALID")
    expected = compute_signature(bytes(payload), secret, timestamp)
    if not any(hmac.compare_digest(expected.encode(), signature.encode()) for signature in signatures):
        raise WebhookVerificationError("signature does not match the payload", code="WEBHOOK_SIGNATURE_INVALID")
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise WebhookVerificationError("signed payload is not JSON", code="WEBHOOK_SIGNATURE_INVALID") from exc
    return event
