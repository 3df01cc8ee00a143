"""The sequencer's lock and its positioning in one statement (PostgreSQL): a function whose second
statement, run after it took the lock, sees every position committed before (each statement of a
VOLATILE function takes a fresh snapshot under READ COMMITTED). See offerhub.events._sequence_batch."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION offerhub_events_sequence(p_lock bigint, p_names varchar[], p_batch integer)
RETURNS SETOF offerhub_event LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    -- The lock only when something waits for a position: nothing more to do otherwise.
    IF NOT EXISTS (SELECT 1 FROM offerhub_event WHERE position IS NULL) THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(p_lock);
    -- The cursors of newly registered subscribers (at the end before this batch: they start
    -- with it), then the positions, returning the events positioned.
    RETURN QUERY
    WITH new_cursors AS (
        INSERT INTO offerhub_subscribercursor (name, position, failures, last_error, updated_at)
        SELECT wanted.name, (SELECT COALESCE(MAX(ev.position), 0) FROM offerhub_event ev), 0, '', now()
        FROM unnest(p_names) AS wanted(name)
        WHERE NOT EXISTS (SELECT 1 FROM offerhub_subscribercursor c WHERE c.name = wanted.name)
        ON CONFLICT (name) DO NOTHING
    )
    UPDATE offerhub_event e SET position = n.position, dispatched_at = now()
    FROM (
        SELECT todo.id, (SELECT COALESCE(MAX(ev.position), 0) FROM offerhub_event ev)
                        + row_number() OVER (ORDER BY todo.id) AS position
        FROM (SELECT ev.id FROM offerhub_event ev WHERE ev.position IS NULL ORDER BY ev.id LIMIT p_batch) todo
    ) n
    WHERE e.id = n.id
    RETURNING e.*;
END
$fn$;
"""

DROP = "DROP FUNCTION IF EXISTS offerhub_events_sequence(bigint, varchar[], integer);"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("offerhub", "0005_job_lease"),
    ]

    operations = [migrations.RunPython(create, drop)]
