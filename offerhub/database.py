"""When the database cannot serve a request now: the process's pool had no free connection in
time, or PostgreSQL refused or dropped the connection. That is a 503 with Retry-After (the
request changed nothing: its transaction never began or was rolled back), never a 500."""

import logging

import psycopg
from django.db import OperationalError, connection
from django.http import HttpResponse
from django.template import loader
from psycopg_pool import PoolTimeout

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2
# PostgreSQL's refusals of a connection: too many clients, shutting down, starting up
# (class 08, connection exceptions, is matched by its prefix).
UNAVAILABLE_SQLSTATES = frozenset({"53300", "57P01", "57P02", "57P03"})


def database_unavailable(exc: BaseException) -> bool:
    """Django's OperationalError caused by a pool timeout or a connection refused or lost."""
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    if isinstance(cause, PoolTimeout):
        return True
    if not isinstance(cause, psycopg.OperationalError):
        return False  # e.g. SQLite's "database is locked"
    # No SQLSTATE: the client failed to connect or lost the server (a query's own errors carry one).
    sqlstate = cause.sqlstate
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in UNAVAILABLE_SQLSTATES


class DatabaseUnavailableMiddleware:
    """Web pages: a view that could not reach the database answers the 503 page, not the 500 one.
    (The API maps the same errors itself, in offerhub.api.errors.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not database_unavailable(exception):
            return None
        logger.warning("database unavailable for %s: %s", request.path, exception)
        # Rendered without context processors: they may need the database too.
        response = HttpResponse(loader.get_template("503.html").render(), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response


def prepared_cursor():
    """A cursor for a fixed statement that many requests run: prepared once per connection where
    the backend keeps pooled connections to PostgreSQL itself (offerhub.postgresql), so that it
    is not parsed and planned again each time; Django's ordinary cursor elsewhere."""
    prepared = getattr(connection, "prepared_cursor", None)
    return prepared() if prepared is not None else connection.cursor()
