"""The API's error envelope and codes (API.md §1.7). No stack trace ever leaves the server."""

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

from offerhub.correlation import correlation_id_get
from offerhub.database import RETRY_AFTER_SECONDS, database_unavailable
from offerhub.errors import ServiceError

logger = logging.getLogger(__name__)


def validation_error(
    fields: list[tuple[str, str]], *, message: str = "Validation failed", details=None
) -> ServiceError:
    """A 400 VALIDATION_ERROR naming each bad field, in both shapes clients read."""
    return ServiceError(
        "VALIDATION_ERROR",
        message,
        details={
            **(details or {}),
            "validationErrors": [f"{field}: {text}" if field else text for field, text in fields],
            "fields": [{"field": field, "message": text} for field, text in fields],
        },
    )


# Field errors that API.md gives a code of their own (balance amounts, currency) instead of VALIDATION_ERROR.
OWN_FIELD_CODES = ("INVALID_AMOUNT_FORMAT", "INVALID_CURRENCY")


def _flatten_drf_errors(detail, prefix: str = "") -> list[tuple[str, str, str]]:
    """(field path, message, error code) for every leaf of a serializer's errors."""
    if isinstance(detail, dict):
        triples = []
        for key, value in detail.items():
            name = "" if key == "non_field_errors" else str(key)
            triples += _flatten_drf_errors(value, f"{prefix}.{name}" if prefix and name else prefix or name)
        return triples
    if isinstance(detail, list):
        triples = []
        for index, item in enumerate(detail):
            if isinstance(item, dict | list) and not all(isinstance(x, str) for x in item):
                triples += _flatten_drf_errors(item, f"{prefix}.{index}" if prefix else str(index))
            else:
                triples += _flatten_drf_errors(item, prefix)
        return triples
    return [(prefix, str(detail), getattr(detail, "code", ""))]


def _from_serializer(detail) -> ServiceError:
    triples = _flatten_drf_errors(detail)
    own = [(field, text, code) for field, text, code in triples if code in OWN_FIELD_CODES]
    if own and len(own) == len(triples):
        field, text, code = own[0]
        return ServiceError(code, f"{field} {text}", details={"field": field})
    return validation_error([(field, text) for field, text, _ in triples])


def _from_service(error: ServiceError) -> ServiceError:
    """A service's refusal with its `field` put where API.md's clients read it."""
    if error.code == "VALIDATION_ERROR" and "fields" not in error.details:
        refusal = validation_error([(error.field, error.message)], message=error.message, details=error.details)
        refusal.headers = error.headers
        return refusal
    if error.field and "field" not in error.details:
        return ServiceError(
            error.code, error.message, details={**error.details, "field": error.field}, headers=error.headers
        )
    return error


def error_body(error: ServiceError) -> dict:
    details = {**error.details, "requestId": correlation_id_get()}
    return {"error": {"code": error.code, "message": error.message, "details": details}}


def error_response(error: ServiceError) -> Response:
    return Response(error_body(error), status=error.status, headers=error.headers)


def as_api_error(exc: Exception) -> ServiceError:
    """Translate Django and DRF exceptions into our codes; anything unexpected is a 500."""
    if isinstance(exc, ServiceError):
        return _from_service(exc)
    if isinstance(exc, drf_exceptions.ValidationError):
        return _from_serializer(exc.detail)
    if isinstance(exc, RequestDataTooBig):
        return ServiceError(
            "PAYLOAD_TOO_LARGE",
            f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes",
            details={"field": "body", "maxBytes": settings.DATA_UPLOAD_MAX_MEMORY_SIZE},
        )
    if isinstance(exc, drf_exceptions.ParseError):
        return validation_error([("body", f"Malformed JSON: {exc.detail}")], message="Malformed JSON body")
    if isinstance(exc, drf_exceptions.UnsupportedMediaType):
        return ServiceError(
            "UNSUPPORTED_MEDIA_TYPE",
            "Send the body as JSON with Content-Type: application/json",
            details={"field": "Content-Type"},
        )
    if isinstance(exc, drf_exceptions.MethodNotAllowed):
        return ServiceError("METHOD_NOT_ALLOWED", str(exc.detail))
    if isinstance(exc, Http404 | drf_exceptions.NotFound):
        return ServiceError("NOT_FOUND", "Resource not found")
    if isinstance(exc, drf_exceptions.NotAuthenticated):
        return ServiceError("UNAUTHORIZED", "Authorization header with a Bearer API key is required")
    if isinstance(exc, drf_exceptions.AuthenticationFailed):
        return ServiceError("INVALID_API_KEY", "Invalid API key")
    if isinstance(exc, PermissionDenied | drf_exceptions.PermissionDenied):
        return ServiceError("INSUFFICIENT_SCOPE", "This API key may not perform this action")
    if database_unavailable(exc):
        logger.warning("database unavailable: %s", exc)
        return ServiceError(
            "SERVICE_UNAVAILABLE",
            "The service is busy and did not process the request; retry after Retry-After seconds",
            details={"retryAfter": RETRY_AFTER_SECONDS},
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    logger.exception("unhandled API error")
    return ServiceError("INTERNAL_ERROR", "An unexpected error occurred. Quote the requestId when reporting it.")


def api_exception_handler(exc, context) -> Response:
    return error_response(as_api_error(exc))
