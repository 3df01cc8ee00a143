"""When the database cannot serve a request now: the process's pool had no free connection in
time, or PostgreSQL refused or dropped the connection. That is a 503 with Retry-After (the
request changed nothing: its transaction never began or was rolled back), never a 500."""

import logging

import psycopg
from django.db import DEFAULT_DB_ALIAS, OperationalError, connection, connections
from django.http import HttpResponse
from django.template import loader
from django.utils.functional import cached_property
from psycopg.types.numeric import Int8
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


def default_connection():
    """The default database's connection for this thread, looked up once: every attribute read
    through django.db.connection (a proxy) looks it up again in a thread-critical local, which the
    hot reads below would pay several times a request."""
    return connections[DEFAULT_DB_ALIAS]


def prepared_cursor(db=None):
    """A cursor for a fixed statement that many requests run: prepared once per connection where
    the backend keeps pooled connections to PostgreSQL itself (offerhub.postgresql), so that it
    is not parsed and planned again each time; Django's ordinary cursor elsewhere. `db`: the
    default connection (default_connection()), if the caller has it already."""
    db = db or default_connection()
    prepared = getattr(db, "prepared_cursor", None)
    return prepared() if prepared is not None else db.cursor()


class ModelColumns:
    """The concrete columns of `model` as the ORM selects them (qualified by `alias`, the table's
    name or alias in the statement), and how a row's values for them become the instance the ORM
    would give: each column through the backend's and the field's db converters (a JSONField's
    text parsed, SQLite's dates...), then Model.from_db. Built on first use, once."""

    def __init__(self, model, alias: str | None = None):
        self.model = model
        self.alias = alias

    @cached_property
    def _plan(self):
        opts = self.model._meta
        quote = connection.ops.quote_name
        fields = opts.concrete_fields
        qualifier = quote(self.alias or opts.db_table)
        select = ", ".join(f"{qualifier}.{quote(field.column)}" for field in fields)
        converters = []
        for position, field in enumerate(fields):
            col = field.get_col(opts.db_table)  # what the ORM selects, and passes to converters
            functions = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
            if functions:
                converters.append((position, col, functions))
        return select, [field.attname for field in fields], converters

    @property
    def select(self) -> str:
        """The select list: every concrete column, in the model's order."""
        return self._plan[0]

    def __len__(self) -> int:
        return len(self._plan[1])

    def instance(self, values, db):
        """The model instance from this model's columns' values (a row's slice, in select order),
        read on `db` (default_connection())."""
        _, attnames, converters = self._plan
        if converters:
            values = list(values)
            for position, col, functions in converters:
                value = values[position]
                for function in functions:
                    value = function(value, col, db)
                values[position] = value
        return self.model.from_db(db.alias, attnames, values)


def prepared_params(fields, values, db) -> list:
    """Parameters for `fields` compared with `values`, prepared as a lookup would
    (field.get_db_prep_value) for `db` (default_connection())."""
    params = [field.get_db_prep_value(value, db) for field, value in zip(fields, values, strict=True)]
    if db.vendor == "postgresql":
        # psycopg sends an int as int2, int4 or int8 by its size, each a statement of its own.
        params = [Int8(value) if type(value) is int else value for value in params]
    return params


class PreparedRowRead:
    """One row of `model` (all its concrete columns) by a fixed WHERE, through prepared_cursor(),
    made into the instance the ORM would give (ModelColumns). For the reads every page makes,
    whose ORM query cost several times its execution to compile.

    `conditions` are (field name, operator) pairs, ANDed; get() takes their values in that order
    and prepares them as a lookup would (prepared_params). The statement is built on first use, once."""

    def __init__(self, model, *conditions: tuple[str, str]):
        self.columns = ModelColumns(model)
        self.conditions = conditions

    @cached_property
    def _plan(self):
        opts = self.columns.model._meta
        quote = connection.ops.quote_name
        where = [opts.get_field(name) for name, _ in self.conditions]
        tests = [f"{quote(opts.get_field(name).column)} {op} %s" for name, op in self.conditions]
        sql = "SELECT {} FROM {} WHERE {}".format(  # noqa: S608  (names from the model, values as parameters)
            self.columns.select, quote(opts.db_table), " AND ".join(tests)
        )
        return sql, where

    @property
    def sql(self) -> str:
        return self._plan[0]

    def get(self, *values):
        """The instance, or None when no row matches."""
        sql, where = self._plan
        db = default_connection()
        with prepared_cursor(db) as cursor:
            cursor.execute(sql, prepared_params(where, values, db))
            row = cursor.fetchone()
        return None if row is None else self.columns.instance(row, db)
