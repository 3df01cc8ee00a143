"""Exceptions raised by the client: one per HTTP status family, each carrying the API's error (API.md §1.7)."""

from __future__ import annotations

from typing import Any


class OfferHubError(Exception):
    """An error answered by the API (or, for `APIConnectionError`, no answer at all).

    Switch on `code` (e.g. ``"INSUFFICIENT_FUNDS"``); `message` is for humans. `details` is the
    error's `details` object; `field` names the input the error is about when the API says so.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        status: int | None = None,
        details: dict[str, Any] | None = None,
        field: str | None = None,
        request_id: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.details = details or {}
        self.field = field
        self.request_id = request_id
        self.headers = headers or {}

    def __str__(self) -> str:
        where = f" (field {self.field})" if self.field else ""
        return f"{self.status} {self.code}: {self.message}{where}" if self.status else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, message={self.message!r})"


class APIConnectionError(OfferHubError):
    """The server could not be reached (or did not answer in time) on every attempt."""


class BadRequestError(OfferHubError):
    """400: invalid input (`VALIDATION_ERROR`, `INVALID_AMOUNT`, …)."""


class AuthenticationError(OfferHubError):
    """401: missing, unknown, revoked or expired key."""


class PermissionDeniedError(OfferHubError):
    """403: the key lacks the scope (`INSUFFICIENT_SCOPE`)."""


class NotFoundError(OfferHubError):
    """404: the resource (or route) does not exist, or is another marketplace's."""


class ConflictError(OfferHubError):
    """409: wrong state (`INVALID_STATE`), already done, or an Idempotency-Key conflict."""


class UnprocessableEntityError(OfferHubError):
    """422: understood but refused (`INSUFFICIENT_FUNDS`, `AIRTM_USER_NOT_LINKED`, …)."""


class RateLimitError(OfferHubError):
    """429: too many requests; `retry_after` is the server's `Retry-After` in seconds."""

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("Retry-After"))


class ServerError(OfferHubError):
    """5xx: the server or a provider behind it failed (`PROVIDER_ERROR`, `PROVIDER_TIMEOUT`, …)."""


_BY_STATUS: dict[int, type[OfferHubError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def error_class(status: int) -> type[OfferHubError]:
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, OfferHubError)


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_from_response(status: int, body: Any, headers: dict[str, str]) -> OfferHubError:
    """Build the exception for an error answer; tolerates bodies that are not the §1.7 shape."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    details = error.get("details") if isinstance(error.get("details"), dict) else {}
    field = details.get("field") if isinstance(details.get("field"), str) else None
    if field is None and isinstance(details.get("fields"), list) and details["fields"]:
        first = details["fields"][0]
        if isinstance(first, dict) and isinstance(first.get("field"), str):
            field = first["field"]
    message = error.get("message") or f"HTTP {status}"
    return error_class(status)(
        str(message),
        code=str(error.get("code") or ""),
        status=status,
        details=details,
        field=field,
        request_id=details.get("requestId") or headers.get("X-Request-ID"),
        headers=headers,
    )
