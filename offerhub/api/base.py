"""The base API view: the order of checks of API.md §1.2 in one place.

route (404/405) → authentication (401) → scope (403) → rate limit (429)
→ idempotency (replay/409) → validation (400) → handler, the handler's writes and
the stored idempotent response committing in one transaction.
"""

import logging
from contextlib import nullcontext
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError, transaction
from django.utils.log import log_response
from rest_framework import exceptions as drf_exceptions
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import JSONParser
from rest_framework.views import APIView

from offerhub.api.errors import as_api_error, error_response, validation_error
from offerhub.api.idempotency import (
    MUTATING_METHODS,
    RETENTION_DEFAULT,
    idempotency_finish,
    idempotency_lock,
    idempotency_start,
)
from offerhub.api.permissions import ANY_SCOPE
from offerhub.api.ratelimit import RateLimitState, client_ip, rate_limit_hit
from offerhub.correlation import idempotency_key_var
from offerhub.errors import ServiceError

logger = logging.getLogger(__name__)

__all__ = ["ANY_SCOPE", "ApiView", "JsonNegotiation", "PublicApiView", "StrictJSONParser"]


class JsonNegotiation(DefaultContentNegotiation):
    """Bodies must be JSON (415 otherwise); answers are JSON whatever the Accept header asks for."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class StrictJSONParser(JSONParser):
    """JSON with a bounded size and depth: a deep body would otherwise reach Python's recursion
    limit while it is parsed or fingerprinted, and a large one exhaust a worker."""

    MAX_DEPTH = 32

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        length = request.META.get("CONTENT_LENGTH") if request is not None else None
        if length and length.isdigit() and int(length) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            raise RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.")
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise drf_exceptions.ParseError(f"JSON nested deeper than {self.MAX_DEPTH} levels") from None
        except drf_exceptions.ParseError as error:
            raise drf_exceptions.ParseError(_parse_problem(str(error.detail))) from None
        _check_parsed(data, max_depth=self.MAX_DEPTH)
        return data


def _parse_problem(detail: str) -> str:
    """What is wrong with a body in the client's terms, not the parser's (no Python internals)."""
    if "int_max_str_digits" in detail:
        return "a number has too many digits"
    if "codec can't decode" in detail:
        return "the body is not UTF-8 text"
    return detail.removeprefix("JSON parse error - ")


def _check_parsed(value, *, max_depth: int) -> None:
    """Nesting depth and text of parsed JSON, iteratively (no recursion to exhaust). A lone
    surrogate (`"\\ud800"`) is valid JSON but not text: PostgreSQL and our own error
    answers could not encode it."""
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            if level > max_depth:
                raise drf_exceptions.ParseError(f"JSON nested deeper than {max_depth} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
            stack.extend((key, level) for key in (item if isinstance(item, dict) else ()))
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise drf_exceptions.ParseError("strings must be Unicode text (no lone surrogates)") from None


def _has_nul(value: str) -> bool:
    return "\x00" in value  # PostgreSQL text cannot hold it: it would fail as a database error


class ApiView(APIView):
    """Authenticated endpoint. Subclasses set `required_scope` and implement handlers."""

    required_scope: str | None = "read"
    required_scopes: dict[str, str] = {}  # per method, e.g. {"POST": "write"}
    idempotency_retention: timedelta | None = RETENTION_DEFAULT
    idempotency_exempt = False
    # Provider-backed handlers commit as they go (a transaction hash must be stored
    # before it is submitted), so they do not run inside one transaction; they dedupe
    # retries on the Idempotency-Key themselves.
    atomic_handler = True
    content_negotiation_class = JsonNegotiation
    parser_classes = [StrictJSONParser]

    def initial(self, request, *args, **kwargs):
        # The route exists (URL resolution got here); the method must too, before auth.
        if request.method.lower() not in self.http_method_names or not hasattr(self, request.method.lower()):
            raise drf_exceptions.MethodNotAllowed(request.method)
        super().initial(request, *args, **kwargs)
        self.check_path_and_query(kwargs, request.query_params)

    @staticmethod
    def check_path_and_query(kwargs: dict, query) -> None:
        """Ids in the path and every query value are bounded and free of NUL; the endpoints' own
        serializers check their meaning."""
        problems = [
            (name, "must be at most 255 characters, without NUL")
            for name, value in kwargs.items()
            if isinstance(value, str) and (len(value) > 255 or _has_nul(value))
        ]
        problems += [
            (name, "must be at most 1000 characters, without NUL")
            for name, values in query.lists()
            if len(name) > 100 or _has_nul(name) or any(len(v) > 1000 or _has_nul(v) for v in values)
        ]
        if problems:
            raise validation_error(problems)

    def check_throttles(self, request):
        self.rate_limit_state = rate_limit_hit(bucket=self._bucket(request))
        if self.rate_limit_state.exceeded:
            raise self._rate_limited(self.rate_limit_state)

    @staticmethod
    def _bucket(request) -> str:
        """The caller's API key once authenticated, else the client's address."""
        principal = getattr(request, "_auth", None)
        return f"key:{principal.key_id}" if principal is not None else f"ip:{client_ip(request)}"

    @staticmethod
    def _rate_limited(state: RateLimitState) -> ServiceError:
        return ServiceError(
            "RATE_LIMITED",
            "Too many requests; retry after the window resets",
            details={"limit": state.limit, "windowSeconds": state.window, "retryAfter": state.retry_after},
            headers={"Retry-After": str(state.retry_after)},
        )

    def dispatch(self, request, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        self.rate_limit_state = None
        self.applied_idempotency_key = None
        record = None
        try:
            self.initial(request, *args, **kwargs)
            if request.auth is not None:  # public endpoints ignore Idempotency-Key
                start = idempotency_start(
                    request=request,
                    principal_id=request.auth.key_id,
                    retention=self.idempotency_retention,
                    exempt=self.idempotency_exempt,
                )
                if start.replay is not None or start.record is not None:
                    self.applied_idempotency_key = request.headers.get("Idempotency-Key")
                if start.replay is not None:
                    return self._finalize(request, start.replay)
                record = start.record
            handler = getattr(self, request.method.lower())
            # Reads need no transaction (liveness must not even touch the database).
            atomic = request.method in MUTATING_METHODS and self.atomic_handler
            token = idempotency_key_var.set(self.applied_idempotency_key)
            try:
                with transaction.atomic() if atomic else nullcontext():
                    if record is not None and atomic:
                        idempotency_lock(record=record)
                    response = self._finalize(request, handler(request, *args, **kwargs))
                    if atomic and response.status_code >= 500:
                        transaction.set_rollback(True)  # a failure answered, not raised, keeps nothing
                    if getattr(response, "deferred", None) is not None:
                        # Answered later, off this thread (offerhub.waits): see dispatch_deferred_finish.
                        response.deferred.idempotency_record = record
                    elif record is not None:
                        idempotency_finish(record=record, response=response)
                record = None  # committed with the handler's writes
            finally:
                idempotency_key_var.reset(token)
            return response
        except Exception as exc:
            response = self._finalize(request, self.handle_exception(exc))
            if record is not None:  # the handler's writes rolled back; keep or release the key
                try:
                    idempotency_finish(record=record, response=response)
                except OperationalError:
                    # The database is out of reach (the error answered is likely a 503 for it): the
                    # record stays unfinished, and a retry takes it over once its claim lapses.
                    logger.warning("idempotency record %s left to lapse", record.pk, exc_info=True)
            return response

    def dispatch_deferred_finish(self, *, record, make_response):
        """The end of `dispatch` for a handler that deferred its answer (a non-atomic one, waiting
        on the event loop for a provider step): the answer made now, finalized and stored for the
        Idempotency-Key as `dispatch` would have, a failure answered in the envelope."""
        token = idempotency_key_var.set(self.applied_idempotency_key)
        try:
            response = self._finalize(self.request, make_response())
            if record is not None:
                idempotency_finish(record=record, response=response)
            return self._deferred_logged(response)
        except Exception as exc:
            response = self._finalize(self.request, self.handle_exception(exc))
            if record is not None:
                try:
                    idempotency_finish(record=record, response=response)
                except OperationalError:
                    logger.warning("idempotency record %s left to lapse", record.pk, exc_info=True)
            return self._deferred_logged(response)
        finally:
            idempotency_key_var.reset(token)

    def _deferred_logged(self, response):
        """django.request logged the stand-in (a 202): an error answered later is logged here."""
        if response.status_code >= 400:
            log_response(f"{response.reason_phrase}: {self.request.path}", response=response, request=self.request)
        return response

    def handle_exception(self, exc):
        error = as_api_error(exc)
        if self.rate_limit_state is None and error.status in (401, 403):
            # Failed authentication counts against the client's IP, a refused scope against the key.
            self.rate_limit_state = rate_limit_hit(bucket=self._bucket(self.request))
            if self.rate_limit_state.exceeded:
                error = self._rate_limited(self.rate_limit_state)
        return error_response(error)

    def _finalize(self, request, response):
        if self.rate_limit_state is None:
            self.rate_limit_state = rate_limit_hit(bucket=self._bucket(request))
        for name, value in self.rate_limit_state.headers().items():
            response[name] = value
        if self.applied_idempotency_key:
            response["X-Idempotency-Key"] = self.applied_idempotency_key
        response = self.finalize_response(request, response, *self.args, **self.kwargs)
        if hasattr(response, "render") and not getattr(response, "is_rendered", True):
            response.render()
        return response


class PublicApiView(ApiView):
    """No key needed (health, config, provider webhooks); still rate limited per IP."""

    required_scope = None
    authentication_classes = []
