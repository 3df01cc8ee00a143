"""The base API view: the order of checks of API.md §1.2 in one place.

route (404/405) → authentication (401) → scope (403) → rate limit (429)
→ idempotency (replay/409) → validation (400) → handler, the handler's writes and
the stored idempotent response committing in one transaction.
"""

from contextlib import nullcontext
from datetime import timedelta

from django.db import transaction
from rest_framework import exceptions as drf_exceptions
from rest_framework.views import APIView

from offerhub.api.errors import ApiError, as_api_error, error_response
from offerhub.api.idempotency import HEADER as IDEMPOTENCY_HEADER
from offerhub.api.idempotency import MUTATING_METHODS, RETENTION_DEFAULT, idempotency_finish, idempotency_start
from offerhub.api.permissions import ANY_SCOPE
from offerhub.api.ratelimit import RateLimitState, client_ip, rate_limit_hit

__all__ = ["ANY_SCOPE", "ApiView", "PublicApiView"]


class ApiView(APIView):
    """Authenticated endpoint. Subclasses set `required_scope` and implement handlers."""

    required_scope: str | None = "read"
    idempotency_retention: timedelta | None = RETENTION_DEFAULT
    idempotency_exempt = False

    def initial(self, request, *args, **kwargs):
        # The route exists (URL resolution got here); the method must too, before auth.
        if request.method.lower() not in self.http_method_names or not hasattr(self, request.method.lower()):
            raise drf_exceptions.MethodNotAllowed(request.method)
        super().initial(request, *args, **kwargs)

    def check_throttles(self, request):
        principal = request.auth
        bucket = f"key:{principal.key_id}" if principal is not None else f"ip:{client_ip(request)}"
        self.rate_limit_state = rate_limit_hit(bucket=bucket)
        if self.rate_limit_state.exceeded:
            raise self._rate_limited(self.rate_limit_state)

    @staticmethod
    def _rate_limited(state: RateLimitState) -> ApiError:
        return ApiError(
            "RATE_LIMITED",
            "Too many requests; retry after the window resets",
            details={"limit": state.limit, "windowSeconds": 60, "retryAfter": state.retry_after},
            headers={"Retry-After": str(state.retry_after)},
        )

    def dispatch(self, request, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        self.rate_limit_state = None
        record = None
        try:
            self.initial(request, *args, **kwargs)
            start = idempotency_start(
                request=request,
                principal_id=request.auth.key_id if request.auth else "",
                retention=self.idempotency_retention,
                exempt=self.idempotency_exempt or self.required_scope is None,
            )
            if start.replay is not None:
                return self._finalize(request, start.replay)
            record = start.record
            handler = getattr(self, request.method.lower())
            # Reads need no transaction (liveness must not even touch the database).
            writes = request.method in MUTATING_METHODS
            with transaction.atomic() if writes else nullcontext():
                response = self._finalize(request, handler(request, *args, **kwargs))
                if record is not None:
                    idempotency_finish(record=record, response=response)
                    record = None
            return response
        except Exception as exc:
            response = self._finalize(request, self.handle_exception(exc))
            if record is not None:  # the handler's writes rolled back; keep or release the key
                idempotency_finish(record=record, response=response)
            return response

    def handle_exception(self, exc):
        error = as_api_error(exc)
        if error.status == 401 and self.rate_limit_state is None:
            # Failed authentication counts against the client's IP.
            self.rate_limit_state = rate_limit_hit(bucket=f"ip:{client_ip(self.request)}")
            if self.rate_limit_state.exceeded:
                error = self._rate_limited(self.rate_limit_state)
        return error_response(error)

    def _finalize(self, request, response):
        if self.rate_limit_state is None:
            self.rate_limit_state = rate_limit_hit(bucket=f"ip:{client_ip(request)}")
        for name, value in self.rate_limit_state.headers().items():
            response[name] = value
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key and request.method in MUTATING_METHODS:
            response["X-Idempotency-Key"] = key
        response = self.finalize_response(request, response, *self.args, **self.kwargs)
        if hasattr(response, "render") and not getattr(response, "is_rendered", True):
            response.render()
        return response


class PublicApiView(ApiView):
    """No key needed (health, config, provider webhooks); still rate limited per IP."""

    required_scope = None
    authentication_classes = []
