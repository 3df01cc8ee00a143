"""Correlation ids: one id follows a request into logs, audit rows, events and tasks.

The id lives in a context variable, so code deep in a service can read it
without passing it around; Celery tasks receive it as a message header.
"""

import contextvars
import logging
import re
import uuid

_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

correlation_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)
# The Idempotency-Key of the API request being handled, for the audit rows it writes.
idempotency_key_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("idempotency_key", default=None)
# True while a Celery task runs: what it commits is delivered to event subscribers right there,
# instead of through one more task (offerhub.events).
in_task_var: contextvars.ContextVar[bool] = contextvars.ContextVar("in_task", default=False)


def correlation_id_get() -> str | None:
    return correlation_id_var.get()


def correlation_id_new() -> str:
    return str(uuid.uuid4())


def correlation_id_from_header(value: str | None) -> str:
    """Keep a client's X-Request-ID when it is safe to echo and log; otherwise mint one."""
    if value and _REQUEST_ID_PATTERN.match(value):
        return value
    return correlation_id_new()


class CorrelationIdMiddleware:
    """Accepts or generates X-Request-ID and returns it on every response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        correlation_id = correlation_id_from_header(request.headers.get("X-Request-ID"))
        request.correlation_id = correlation_id
        # Not reset afterwards: Django logs the response after the middleware returns,
        # and that line should carry the id too. The next request overwrites it.
        correlation_id_var.set(correlation_id)
        response = self.get_response(request)
        response["X-Request-ID"] = correlation_id
        return response


class SandboxNotFoundFilter(logging.Filter):
    """Drops Django's "Not Found: /sandbox/..." warnings: looking up an account before it
    exists is how wallets are created, not a problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.getMessage().startswith("Not Found: /sandbox/"))


class CorrelationIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id_var.get() or "-"
        return True


class AccessLogTokenFilter(logging.Filter):
    """The event stream takes a short-lived token in its URL (`?token=ohk_tok_…`, for a browser's
    EventSource): the server's access log shows the path, never that credential."""

    _TOKEN = re.compile(r"(?i)((?:^|[?&])token=)[^&\s]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._TOKEN.sub(r"\1[redacted]", arg) if isinstance(arg, str) and "token=" in arg.lower() else arg
                for arg in record.args
            )
        return True
