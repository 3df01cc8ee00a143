"""The catalogue's version: one row whose value changes in every transaction that changes what a
catalogue page shows (listings, their images, categories, reviews, a seller's name, handle or
standing). marketplace.catalog_pages keys its cached pages by it.

Database triggers, not Django signals: bulk update()s, the admin's actions, raw SQL and loaders
all bump it. The row changes inside the writing transaction, so a reader sees the new version
exactly when it can see the new rows; a reader that reads the version and then the rows can only
cache rows at least as new as its version. The new value is never one used before, not even by a
transaction that rolled back (a sequence on PostgreSQL, which no rollback returns; a random
64-bit value on SQLite), so a page cached inside a transaction that then rolled back is never
served again. It changes with every statement, so that a transaction that writes and then reads
sees its own writes. The row stays locked from a transaction's first catalogue write to its
commit: catalogue writes are serialised, never reads; nothing that orders, funds or pays writes
these tables or columns.

A plain table (no model): Django's test flush, which empties the models' tables, leaves it alone.
"""

from django.db import migrations

CATALOG_TABLES = ("marketplace_listing", "marketplace_listingimage", "marketplace_category", "marketplace_review")
# The user columns a catalogue page shows or filters on (a listing is browsable while its seller is).
USER_COLUMNS = ("display_name", "handle", "is_active", "status")

POSTGRESQL_FUNCTION = """
CREATE SEQUENCE marketplace_catalog_version_seq;
CREATE TABLE marketplace_catalog_version (
    id smallint PRIMARY KEY CHECK (id = 1),
    version bigint NOT NULL
);
INSERT INTO marketplace_catalog_version VALUES (1, nextval('marketplace_catalog_version_seq'));
CREATE FUNCTION marketplace_catalog_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE marketplace_catalog_version SET version = nextval('marketplace_catalog_version_seq') WHERE id = 1;
    RETURN NULL;
END $$;
"""


def _postgresql_triggers() -> str:
    statements = []
    for table in CATALOG_TABLES:
        statements.append(
            f"CREATE TRIGGER catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION marketplace_catalog_changed();"
        )
    changed = " OR ".join(f"OLD.{column} IS DISTINCT FROM NEW.{column}" for column in USER_COLUMNS)
    statements.append(
        f"CREATE TRIGGER catalog_changed_update AFTER UPDATE ON marketplace_user "
        f"FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION marketplace_catalog_changed();"
    )
    return "\n".join(statements)


def sqlite_statements() -> list[str]:
    """Idempotent: SQLite drops a table's triggers when a migration rebuilds the table (its way
    of altering one), so marketplace.apps runs these again after every migrate."""
    bump = "BEGIN UPDATE marketplace_catalog_version SET version = random() WHERE id = 1; END"
    statements = [
        "CREATE TABLE IF NOT EXISTS marketplace_catalog_version"
        " (id integer PRIMARY KEY CHECK (id = 1), version integer NOT NULL)",
        "INSERT OR IGNORE INTO marketplace_catalog_version VALUES (1, random())",
    ]
    for table in CATALOG_TABLES:
        for event in ("INSERT", "UPDATE", "DELETE"):
            statements.append(
                f"CREATE TRIGGER IF NOT EXISTS {table}_catalog_{event.lower()} AFTER {event} ON {table} {bump}"
            )
    changed = " OR ".join(f"OLD.{column} IS NOT NEW.{column}" for column in USER_COLUMNS)
    statements.append(
        "CREATE TRIGGER IF NOT EXISTS marketplace_user_catalog_update"
        f" AFTER UPDATE ON marketplace_user WHEN {changed} {bump}"
    )
    return statements


def catalog_version_create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRESQL_FUNCTION + _postgresql_triggers())
    else:
        for statement in sqlite_statements():
            schema_editor.execute(statement)


def catalog_version_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        drops = [f"DROP TRIGGER IF EXISTS catalog_changed ON {table};" for table in CATALOG_TABLES]
        drops += [
            "DROP TRIGGER IF EXISTS catalog_changed_update ON marketplace_user;",
            "DROP FUNCTION IF EXISTS marketplace_catalog_changed();",
            "DROP TABLE IF EXISTS marketplace_catalog_version;",
            "DROP SEQUENCE IF EXISTS marketplace_catalog_version_seq;",
        ]
        schema_editor.execute("\n".join(drops))
    else:
        for table in CATALOG_TABLES:
            for event in ("insert", "update", "delete"):
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_catalog_{event}")
        schema_editor.execute("DROP TRIGGER IF EXISTS marketplace_user_catalog_update")
        schema_editor.execute("DROP TABLE IF EXISTS marketplace_catalog_version")


class Migration(migrations.Migration):
    dependencies = [("marketplace", "0012_user_handle_required")]

    operations = [migrations.RunPython(catalog_version_create, catalog_version_drop, elidable=False)]
