"""The API's error envelope and codes (API.md §1.7). No stack trace ever leaves the server."""

import logging

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

from offerhub.correlation import correlation_id_get

logger = logging.getLogger(__name__)

STATUS_BY_CODE = {
    "UNAUTHORIZED": 401,
    "INVALID_API_KEY": 401,
    "INSUFFICIENT_SCOPE": 403,
    "VALIDATION_ERROR": 400,
    "INVALID_AMOUNT_FORMAT": 400,
    "INVALID_CURRENCY": 400,
    "MISSING_REQUIRED_FIELD": 400,
    "INVALID_REQUEST": 400,
    "INVALID_AMOUNT": 400,
    "USER_NOT_FOUND": 404,
    "USER_ALREADY_EXISTS": 409,
    "AIRTM_USER_NOT_LINKED": 422,
    "AIRTM_USER_INVALID": 422,
    "AIRTM_USER_ALREADY_LINKED": 409,
    "INSUFFICIENT_FUNDS": 422,
    "FUNDS_ALREADY_RESERVED": 409,
    "RESERVE_NOT_FOUND": 404,
    "RESERVE_MISMATCH_AMOUNT": 422,
    "BALANCE_DISCREPANCY": 409,
    "BALANCE_CONCURRENCY_CONFLICT": 409,
    "ORDER_NOT_FOUND": 404,
    "INVALID_STATE": 409,
    "ESCROW_ALREADY_EXISTS": 409,
    "ESCROW_NOT_READY": 409,
    "DISPUTE_ALREADY_OPEN": 409,
    "ESCROW_NOT_FOUND": 404,
    "ESCROW_ALREADY_FUNDED": 409,
    "ESCROW_INSUFFICIENT_FUNDS": 422,
    "ESCROW_INVALID_STATE": 409,
    "ESCROW_FUNDING_FAILED": 422,
    "MILESTONE_NOT_FOUND": 404,
    "PROVIDER_ERROR": 502,
    "PROVIDER_TIMEOUT": 504,
    "PROVIDER_RATE_LIMITED": 502,
    "PROVIDER_UNAVAILABLE": 503,
    "STELLAR_NETWORK_ERROR": 502,
    "WEBHOOK_SIGNATURE_INVALID": 401,
    "WITHDRAWAL_NOT_FOUND": 404,
    "WITHDRAWAL_NOT_COMMITTABLE": 409,
    "WITHDRAWAL_DESTINATION_INVALID": 422,
    "TOPUP_NOT_FOUND": 404,
    "DISPUTE_NOT_FOUND": 404,
    "IDEMPOTENCY_KEY_REUSED": 409,
    "IDEMPOTENCY_KEY_IN_PROGRESS": 409,
    "RATE_LIMITED": 429,
    "INTERNAL_ERROR": 500,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "WALLET_NOT_FOUND": 404,
    "API_KEY_NOT_FOUND": 404,
    "ORDER_REF_CONFLICT": 409,
    # A participant acting outside their role (the web pages' actors; API keys act as the platform).
    "FORBIDDEN": 403,
}


class ApiError(Exception):
    """An error the API answers with its envelope: a code, a human message and details."""

    def __init__(self, code: str, message: str, *, details: dict | None = None, headers: dict | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = STATUS_BY_CODE[code]
        self.details = details or {}
        self.headers = headers or {}


def validation_error(fields: list[tuple[str, str]], *, message: str = "Validation failed", details=None) -> ApiError:
    """A 400 VALIDATION_ERROR naming each bad field, in both shapes clients read."""
    return ApiError(
        "VALIDATION_ERROR",
        message,
        details={
            **(details or {}),
            "validationErrors": [f"{field}: {text}" if field else text for field, text in fields],
            "fields": [{"field": field, "message": text} for field, text in fields],
        },
    )


def _flatten_drf_errors(detail, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(detail, dict):
        pairs = []
        for key, value in detail.items():
            name = "" if key == "non_field_errors" else str(key)
            pairs += _flatten_drf_errors(value, f"{prefix}.{name}" if prefix and name else prefix or name)
        return pairs
    if isinstance(detail, list):
        pairs = []
        for index, item in enumerate(detail):
            if isinstance(item, dict | list) and not all(isinstance(x, str) for x in item):
                pairs += _flatten_drf_errors(item, f"{prefix}.{index}" if prefix else str(index))
            else:
                pairs += _flatten_drf_errors(item, prefix)
        return pairs
    return [(prefix, str(detail))]


def error_response(error: ApiError) -> Response:
    details = {**error.details, "requestId": correlation_id_get()}
    body = {"error": {"code": error.code, "message": error.message, "details": details}}
    return Response(body, status=error.status, headers=error.headers)


def as_api_error(exc: Exception) -> ApiError:
    """Translate Django and DRF exceptions into our codes; anything unexpected is a 500."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, drf_exceptions.ValidationError):
        return validation_error(_flatten_drf_errors(exc.detail))
    if isinstance(exc, drf_exceptions.ParseError):
        return validation_error([("body", f"Malformed JSON: {exc.detail}")], message="Malformed JSON body")
    if isinstance(exc, drf_exceptions.UnsupportedMediaType):
        return validation_error([("Content-Type", str(exc.detail))], message="Unsupported media type")
    if isinstance(exc, drf_exceptions.MethodNotAllowed):
        return ApiError("METHOD_NOT_ALLOWED", str(exc.detail))
    if isinstance(exc, Http404 | drf_exceptions.NotFound):
        return ApiError("NOT_FOUND", "Resource not found")
    if isinstance(exc, drf_exceptions.NotAuthenticated):
        return ApiError("UNAUTHORIZED", "Authorization header with a Bearer API key is required")
    if isinstance(exc, drf_exceptions.AuthenticationFailed):
        return ApiError("INVALID_API_KEY", "Invalid API key")
    if isinstance(exc, PermissionDenied | drf_exceptions.PermissionDenied):
        return ApiError("INSUFFICIENT_SCOPE", "This API key may not perform this action")
    logger.exception("unhandled API error")
    return ApiError("INTERNAL_ERROR", "An unexpected error occurred. Quote the requestId when reporting it.")


def api_exception_handler(exc, context) -> Response:
    return error_response(as_api_error(exc))
