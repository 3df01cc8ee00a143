"""The signature of API.md §14: `OfferHub-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`.

The HMAC key is the endpoint's whole secret (`whsec_…`, as UTF-8 bytes) and the signed text is
`"<t>.<raw body>"`. This is not the Standard Webhooks / svix scheme (`webhook-signature:
v1,<base64>` over `"<msg id>.<t>.<body>"`, with a base64-decoded key), so those libraries cannot
produce or check it; it is computed here with the standard library, and compared in constant time.
"""

import hashlib
import hmac
import time

SIGNATURE_HEADER = "OfferHub-Signature"
TOLERANCE_SECONDS = 300  # receivers should refuse older signatures (API.md §14)


def signature_compute(*, secret: str, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of `"<timestamp>.<body>"` under the secret."""
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(*, secret: str, body: bytes, timestamp: int) -> str:
    return f"t={timestamp},v1={signature_compute(secret=secret, body=body, timestamp=timestamp)}"


def signature_verify(
    *, secret: str, body: bytes, header: str, tolerance: int = TOLERANCE_SECONDS, now: float | None = None
) -> bool:
    """True when `header` holds a `v1` signature of `body` under `secret` made within `tolerance`
    seconds of `now`. Several `v1=` entries are allowed (one per secret during a rotation)."""
    timestamp, candidates = None, []
    for part in (header or "").split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif name == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = signature_compute(secret=secret, body=body, timestamp=timestamp).encode()
    return any(hmac.compare_digest(expected, candidate.encode("utf-8", "replace")) for candidate in candidates)
