"""On PostgreSQL the database itself keeps the ledger honest:
- a deferred constraint trigger rejects, at commit, any journal entry whose postings do not sum to zero;
- postings and journal entries can be neither updated nor deleted."""

from django.db import migrations

from offerhub.migration_helpers import postgresql_only

CREATE = """
CREATE OR REPLACE FUNCTION payments_entry_balanced() RETURNS trigger AS $$
DECLARE
    total numeric;
BEGIN
    SELECT COALESCE(SUM(amount), 0) INTO total FROM payments_posting WHERE entry_id = NEW.entry_id;
    IF total <> 0 THEN
        RAISE EXCEPTION USING
            MESSAGE = 'journal entry ' || NEW.entry_id || ' is unbalanced by ' || total || ' stroops',
            ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER payments_posting_balanced
    AFTER INSERT ON payments_posting
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION payments_entry_balanced();

CREATE OR REPLACE FUNCTION payments_ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION USING
        MESSAGE = TG_TABLE_NAME || ' is append-only: ' || TG_OP || ' refused',
        ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER payments_posting_append_only
    BEFORE UPDATE OR DELETE ON payments_posting
    FOR EACH ROW EXECUTE FUNCTION payments_ledger_append_only();

CREATE TRIGGER payments_journalentry_append_only
    BEFORE UPDATE OR DELETE ON payments_journalentry
    FOR EACH ROW EXECUTE FUNCTION payments_ledger_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS payments_journalentry_append_only ON payments_journalentry;
DROP TRIGGER IF EXISTS payments_posting_append_only ON payments_posting;
DROP FUNCTION IF EXISTS payments_ledger_append_only();
DROP TRIGGER IF EXISTS payments_posting_balanced ON payments_posting;
DROP FUNCTION IF EXISTS payments_entry_balanced();
"""


class Migration(migrations.Migration):
    dependencies = [("payments", "0001_initial")]

    operations = [migrations.RunPython(postgresql_only(CREATE), postgresql_only(DROP))]
