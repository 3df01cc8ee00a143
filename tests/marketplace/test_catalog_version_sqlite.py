"""The catalogue version's SQLite triggers (embedded mode), on a real SQLite database: every write
to what a catalogue page shows changes the version, and running the statements again (as
marketplace.apps does after every migrate) restores triggers a table rebuild dropped."""

import importlib
import sqlite3

import pytest

migration = importlib.import_module("marketplace.migrations.0013_catalog_version")

TABLES = {
    "marketplace_listing": "id integer PRIMARY KEY, title text",
    "marketplace_listingimage": "id integer PRIMARY KEY, image text",
    "marketplace_category": "id integer PRIMARY KEY, name text",
    "marketplace_review": "id integer PRIMARY KEY, rating integer",
    "marketplace_user": "id integer PRIMARY KEY, display_name text, handle text, is_active bool, status text, "
    "last_login text",
}


@pytest.fixture
def db(tmp_path):
    connection = sqlite3.connect(tmp_path / "embedded.sqlite3", isolation_level=None)
    for table, columns in TABLES.items():
        connection.execute(f"CREATE TABLE {table} ({columns})")
    for statement in migration.sqlite_statements():
        connection.execute(statement)
    yield connection
    connection.close()


def version(db) -> int:
    return db.execute("SELECT version FROM marketplace_catalog_version WHERE id = 1").fetchone()[0]


def changes_version(db, sql: str) -> bool:
    before = version(db)
    db.execute(sql)
    return version(db) != before


def test_every_write_to_what_a_page_shows_changes_the_version(db):
    for table in ("marketplace_listing", "marketplace_listingimage", "marketplace_category", "marketplace_review"):
        # Table names of this test's own: no input in these statements.
        assert changes_version(db, f"INSERT INTO {table} (id) VALUES (1)")  # noqa: S608
        assert changes_version(db, f"UPDATE {table} SET id = 2 WHERE id = 1")  # noqa: S608
        assert changes_version(db, f"DELETE FROM {table} WHERE id = 2")  # noqa: S608
    db.execute("INSERT INTO marketplace_user VALUES (1, 'Sam', 'sam', 1, 'ACTIVE', NULL)")
    assert changes_version(db, "UPDATE marketplace_user SET display_name = 'Samantha'")
    assert changes_version(db, "UPDATE marketplace_user SET is_active = 0")
    assert not changes_version(db, "UPDATE marketplace_user SET last_login = '2026-12-05'")  # a login


def test_the_statements_run_again_restore_what_a_table_rebuild_dropped(db):
    for statement in migration.sqlite_statements():  # idempotent: nothing doubled, no error
        db.execute(statement)
    kept = version(db)
    assert db.execute("SELECT count(*) FROM marketplace_catalog_version").fetchone()[0] == 1
    # How Django's SQLite schema editor alters a table: a copy, the old one dropped (and its triggers).
    db.execute(f"CREATE TABLE new__marketplace_review ({TABLES['marketplace_review']})")
    db.execute("INSERT INTO new__marketplace_review SELECT * FROM marketplace_review")
    db.execute("DROP TABLE marketplace_review")
    db.execute("ALTER TABLE new__marketplace_review RENAME TO marketplace_review")
    assert not changes_version(db, "INSERT INTO marketplace_review (id) VALUES (1)")
    for statement in migration.sqlite_statements():
        db.execute(statement)
    assert version(db) == kept  # the version itself is left as it was
    assert changes_version(db, "INSERT INTO marketplace_review (id) VALUES (2)")
