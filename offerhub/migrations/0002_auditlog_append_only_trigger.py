"""On PostgreSQL the database itself refuses UPDATE and DELETE on audit rows, so no code
path (raw SQL, a shell, a bug) can rewrite history."""

from django.db import migrations

from offerhub.migration_helpers import postgresql_only

CREATE = """
CREATE OR REPLACE FUNCTION offerhub_audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION USING
        MESSAGE = 'offerhub_auditlog is append-only: ' || TG_OP || ' refused',
        ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER offerhub_auditlog_append_only
    BEFORE UPDATE OR DELETE ON offerhub_auditlog
    FOR EACH ROW EXECUTE FUNCTION offerhub_audit_log_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS offerhub_auditlog_append_only ON offerhub_auditlog;
DROP FUNCTION IF EXISTS offerhub_audit_log_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("offerhub", "0001_initial")]

    operations = [migrations.RunPython(postgresql_only(CREATE), postgresql_only(DROP))]
