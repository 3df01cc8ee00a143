"""Python client for the OfferHub REST API v1 (see clients/python/README.md)."""

from ._http import Page, __version__
from .client import OfferHub
from .errors import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    OfferHubError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UnprocessableEntityError,
)
from .sse import Event, ServerSentEvent, SSEDecoder, iter_events
from .webhooks import SIGNATURE_HEADER, WebhookVerificationError, compute_signature, verify_webhook

__all__ = [
    "SIGNATURE_HEADER",
    "APIConnectionError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "Event",
    "NotFoundError",
    "OfferHub",
    "OfferHubError",
    "Page",
    "PermissionDeniedError",
    "RateLimitError",
    "SSEDecoder",
    "ServerError",
    "ServerSentEvent",
    "UnprocessableEntityError",
    "WebhookVerificationError",
    "__version__",
    "compute_signature",
    "iter_events",
    "verify_webhook",
]
