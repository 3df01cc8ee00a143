"""Django's PostgreSQL backend, whose pool checks only the connections that sat idle.

Django's CONN_HEALTH_CHECKS makes the pool run psycopg_pool's check (an empty query) before
every checkout: one more round trip to PostgreSQL per request, as many as the request's own for
a read of one statement. Here a connection returned to the pool a moment ago (healthy then: the
pool rolls back or discards any other), whose client side is still in a good state, is handed out
as it is; one idle DATABASE_POOL_CHECK_IDLE_SECONDS or longer, or of unknown age, gets the same
check, and a connection that fails it goes back to the pool (which discards and replaces it) and
the next is taken, so connections dropped while idle (a restarted server, a proxy's idle timeout)
are still never given to a request. What is lost: a server that goes away within that second
after a connection's return fails the one request that gets it, with the 503 of a database out of
reach (offerhub.database), and the pool replaces the connection.

It also offers `prepared_cursor()` for the fixed statements of the most frequent reads (a
balance, a page of orders, every page's session and member): PostgreSQL parses and plans each
once per connection and then runs it by name (planning the orders page cost twice its
execution), and Django's query log shows them as it shows the others (last_executed_query).
The backend is used only with the in-process pool, i.e. connected to PostgreSQL directly: behind PgBouncer's transaction
pooling (DATABASE_POOL_MAX_SIZE=0), where a prepared statement would not follow the client from
one server connection to the next, Django's own backend runs and those reads use its cursor.
"""

import time
from datetime import UTC
from functools import cache

import psycopg
from django.conf import settings
from django.db.backends.postgresql.base import DatabaseWrapper as PostgreSQLDatabaseWrapper
from django.db.backends.postgresql.operations import DatabaseOperations as PostgreSQLDatabaseOperations
from psycopg.adapt import AdaptersMap, Loader
from psycopg.pq import ConnStatus, Format, TransactionStatus
from psycopg_pool import ConnectionPool

__all__ = ["DatabaseWrapper", "pool_connection_fresh"]


def pool_connection_fresh(connection: psycopg.Connection) -> bool:
    """Returned less than DATABASE_POOL_CHECK_IDLE_SECONDS ago, and still in a good state."""
    returned_at = getattr(connection, "_offerhub_returned_at", None)
    return (
        returned_at is not None
        and time.monotonic() - returned_at < settings.DATABASE_POOL_CHECK_IDLE_SECONDS
        and connection.pgconn.status == ConnStatus.OK
        and connection.pgconn.transaction_status == TransactionStatus.IDLE
    )


# psycopg's own timestamptz loader: in C with psycopg[binary].
_PsycopgTimestamptzLoader = psycopg.adapters.get_loader(psycopg.adapters.types["timestamptz"].oid, Format.TEXT)


class UtcTimestamptzLoader(Loader):
    """timestamptz read by psycopg's own loader and given in UTC, as Django's loader gives it
    under USE_TZ. Django's is psycopg's pure-Python loader (a regular expression per value, and
    the connection's settings read again for every result), which cost a session's read more
    than its statement's round trip on the client side."""

    timezone = UTC  # Django's create_cursor compares it with its own: equal, it keeps this loader

    def __init__(self, oid, context=None):
        super().__init__(oid, context)
        self._load = _PsycopgTimestamptzLoader(oid, context).load

    def load(self, data):
        return self._load(data).astimezone(UTC)


@cache
def _adapters_with_utc_timestamps(template: AdaptersMap) -> AdaptersMap:
    adapters = AdaptersMap(template)
    adapters.register_loader("timestamptz", UtcTimestamptzLoader)
    return adapters


class PreparingCursor(psycopg.Cursor):
    """Server-side parameters, every statement prepared on its connection (psycopg keeps the
    connection's 100 most recent; its text and parameter types name it)."""

    def execute(self, query, params=None, *, prepare=None, binary=None):
        return super().execute(query, params, prepare=True, binary=binary)


class DatabaseOperations(PostgreSQLDatabaseOperations):
    def last_executed_query(self, cursor, sql, params):
        # psycopg keeps no query text for a prepared statement's run, so Django's query log (DEBUG,
        # tests' CaptureQueriesContext) would show None: the statement with its parameters in
        # place, as Django shows server-side bound ones.
        if isinstance(cursor, PreparingCursor):
            try:
                return self.compose_sql(sql, params)
            except psycopg.DataError:
                return None
        return super().last_executed_query(cursor, sql, params)


class DatabaseWrapper(PostgreSQLDatabaseWrapper):
    ops_class = DatabaseOperations

    def get_connection_params(self):
        params = super().get_connection_params()
        if settings.USE_TZ and self.timezone == UTC:  # else Django's loader, converting to its zone
            params["context"] = _adapters_with_utc_timestamps(params["context"])
        return params

    def prepared_cursor(self):
        """A cursor (Django's wrapper: errors, query logging) whose statements are prepared."""
        self.close_if_health_check_failed()
        self.ensure_connection()
        if self.connection.prepare_threshold is None:
            # Django turns preparing off (None), which refuses even an explicit prepare. Counted
            # preparing stays off in effect: Django's own cursors bind on the client and never
            # prepare; this cursor asks for it each time.
            self.connection.prepare_threshold = 2**31
        with self.wrap_database_errors:
            return self._prepare_cursor(PreparingCursor(self.connection))

    def _close(self):
        # When it went back: stamped here, not by the pool's `reset` callback, which would hand
        # every return to a pool worker thread (a thread switch per request, a fifth of a busy
        # server's CPU) where returning in the request's thread costs nothing.
        if self.connection is not None and self.pool is not None:
            self.connection._offerhub_returned_at = time.monotonic()
        return super()._close()

    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        pool = self.pool
        if pool is None:
            return connection
        for _ in range(pool.max_size):  # each failed check costs the pool that connection
            if pool_connection_fresh(connection):
                return connection
            try:
                ConnectionPool.check_connection(connection)
            except psycopg.Error:
                pool.putconn(connection)  # broken: the pool discards it and opens another
                connection = super().get_new_connection(conn_params)
            else:
                return connection
        return connection
