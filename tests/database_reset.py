"""Faster database reset after transactional tests (live servers, threads), same end state.

Django ends each TransactionTestCase (pytest-django's transactional_db, live_server) with
`flush`: one TRUNCATE of every table, then the post_migrate signal to recreate content types,
permissions and the support roles. On PostgreSQL a TRUNCATE costs a new file per table, whether
the table holds a row or not: 60 tables took 0.4-1.3 s a test, over 600 such tests a run.

Here a test's end empties only the tables it left rows in, and reruns post_migrate only when it
changed what post_migrate had made. The state after a full flush is recorded (each table empty,
or a digest of its rows); afterwards, a table that should be empty and is not is emptied (DELETE,
with the foreign keys, all DEFERRABLE, checked at commit; TRUNCATE for the append-only tables whose
triggers refuse a DELETE), and a table that post_migrate fills and differs from its digest makes
it a full flush again, exactly as Django does it. Other databases, and test cases using
`available_apps` or serialized rollback, keep Django's own teardown.
"""

from django.core.management import call_command
from django.db import DatabaseError, connections, transaction
from django.test import TransactionTestCase

_django_fixture_teardown = TransactionTestCase._fixture_teardown


class _Baseline:
    """What a database holds right after a full flush: per table, None (empty) or a digest."""

    def __init__(self, connection):
        self.tables = sorted(connection.introspection.django_table_names(only_existing=True, include_views=False))
        with connection.cursor() as cursor:
            # Tables whose own triggers refuse DELETE (append-only ledgers and audit log).
            cursor.execute(
                "SELECT DISTINCT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE NOT t.tgisinternal AND (t.tgtype & 8) <> 0 AND pg_table_is_visible(c.oid)"
            )
            self.delete_refused = {name for (name,) in cursor.fetchall()}
            cursor.execute(" UNION ALL ".join(_digest_query(connection, table) for table in self.tables))
            self.digests = dict(cursor.fetchall())

    def dirty_tables(self, connection) -> tuple[list[str], bool]:
        """The tables that should be empty and hold rows, and whether a post_migrate table changed."""
        parts = [
            _digest_query(connection, table) if self.digests[table] is not None else _any_row_query(connection, table)
            for table in self.tables
        ]
        with connection.cursor() as cursor:
            cursor.execute(" UNION ALL ".join(parts))
            rows = cursor.fetchall()
        changed = any(self.digests[table] != digest for table, digest in rows if self.digests[table] is not None)
        dirty = [table for table, _ in rows if self.digests[table] is None]
        return dirty, changed


def _digest_query(connection, table: str) -> str:
    quoted = connection.ops.quote_name(table)
    return f"(SELECT '{table}', md5(string_agg(r::text, '|' ORDER BY r::text)) FROM {quoted} r)"  # noqa: S608  (Django's own table names)


def _any_row_query(connection, table: str) -> str:
    return f"(SELECT '{table}', NULL FROM {connection.ops.quote_name(table)} LIMIT 1)"  # noqa: S608


_baselines: dict[str, _Baseline] = {}


def _full_flush(db_name: str):
    """Django's own flush of this database (the arguments of TransactionTestCase's teardown
    without available_apps or serialized rollback), then a fresh record of its state."""
    call_command(
        "flush",
        verbosity=0,
        interactive=False,
        database=db_name,
        reset_sequences=False,
        allow_cascade=False,
        inhibit_post_migrate=False,
    )
    if connections[db_name].vendor == "postgresql":
        _baselines[db_name] = _Baseline(connections[db_name])


def _fixture_teardown(self):
    if self.available_apps is not None or self.serialized_rollback:
        return _django_fixture_teardown(self)
    for db_name in self._databases_names(include_mirrors=False):
        connection = connections[db_name]
        baseline = _baselines.get(db_name)
        if connection.vendor != "postgresql" or baseline is None:
            _full_flush(db_name)
            continue
        try:
            dirty, changed = baseline.dirty_tables(connection)
        except DatabaseError:  # a table gone or added since: Django's way
            _full_flush(db_name)
            continue
        if changed:
            _full_flush(db_name)
            continue
        if dirty:
            _empty(connection, db_name, dirty, baseline.delete_refused)


def _empty(connection, db_name: str, tables: list[str], delete_refused: set[str]):
    quote = connection.ops.quote_name
    truncated = [quote(table) for table in tables if table in delete_refused]
    with transaction.atomic(using=db_name), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        if truncated:  # first, before any DELETE leaves trigger events pending on them
            cursor.execute(f"TRUNCATE {', '.join(truncated)} CASCADE")
        for table in tables:
            if table not in delete_refused:
                cursor.execute(f"DELETE FROM {quote(table)}")  # noqa: S608  (Django's own table names)


def install():
    TransactionTestCase._fixture_teardown = _fixture_teardown
