"""Helpers for migrations that add database-level guarantees."""


def postgresql_only(sql: str):
    """A RunPython function executing `sql` on PostgreSQL only (SQLite, the embedded mode's
    database, keeps the model-level guarantees alone)."""

    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run
