"""The audit log is append-only, in the model and, on PostgreSQL, in the database."""

import re

import pytest
from django.db import DatabaseError, connection, transaction
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from offerhub.models import AppendOnlyError, AuditLog
from offerhub.services import REDACTED, audit_record, redact

pytestmark = pytest.mark.django_db


def make_row(**overrides) -> AuditLog:
    fields = {
        "action": "test.done",
        "resource_type": "Test",
        "resource_id": "1",
        "actor_type": "SYSTEM",
        "actor_id": "t",
    }
    return audit_record(**{**fields, **overrides})


def test_model_refuses_update_and_delete():
    row = make_row()
    row.action = "rewritten"
    with pytest.raises(AppendOnlyError):
        row.save()
    with pytest.raises(AppendOnlyError):
        row.delete()
    with pytest.raises(AppendOnlyError):
        AuditLog.objects.filter(pk=row.pk).update(action="rewritten")
    with pytest.raises(AppendOnlyError):
        AuditLog.objects.filter(pk=row.pk).delete()
    assert AuditLog.objects.get(pk=row.pk).action == "test.done"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger exists on PostgreSQL only")
@pytest.mark.parametrize(
    "statement",
    ["UPDATE offerhub_auditlog SET action = 'x' WHERE id = %s", "DELETE FROM offerhub_auditlog WHERE id = %s"],
)
def test_database_refuses_update_and_delete_on_postgresql(statement):
    row = make_row()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, [row.pk])
    assert AuditLog.objects.get(pk=row.pk).action == "test.done"


def test_secrets_keys_and_emails_are_redacted_before_storage():
    row = make_row(
        payload_after={
            "name": "shop",
            "email": "bea@example.test",
            "apiKey": "anything",
            "nested": {"password": "hunter2", "note": "contact sam@example.test with ohk_test_key_abc_def"},
            "items": [{"secret": "s"}],
        }
    )
    row.refresh_from_db()
    after = row.payload_after
    assert after["name"] == "shop"
    assert after["email"] == after["apiKey"] == "[REDACTED]"
    assert after["nested"]["password"] == "[REDACTED]"
    assert "sam@example.test" not in after["nested"]["note"]
    assert "ohk_test_key" not in after["nested"]["note"]
    assert after["items"] == [{"secret": "[REDACTED]"}]


# Inputs on which a backtracking e-mail pattern retried from every position is quadratic:
# long runs with no "@", no dot after it, or "@" everywhere (each 100,000+ characters).
PATHOLOGICAL = [
    ("a" * 100_000, "a" * 100_000),
    ("a@" + "b" * 100_000, "a@" + "b" * 100_000),
    ("@" * 100_000, "@" * 100_000),
    ("a@b" * 40_000, "a@b" * 40_000),
    ("a." * 50_000 + "@", "a." * 50_000 + "@"),
    ("x" * 100_000 + "@example.com and keep this", f"{REDACTED} and keep this"),
    ("S" * 100_000, REDACTED),
    ("ohk_test_" * 12_000 + " ohk_live_", REDACTED + " ohk_live_"),
    ("a@" + "b." * 50_000, REDACTED),
    ("write to " + "user@example.com " * 10_000 + "today", "write to " + f"{REDACTED} " * 10_000 + "today"),
]


@pytest.mark.parametrize(("text", "expected"), PATHOLOGICAL, ids=range(len(PATHOLOGICAL)))
def test_redaction_of_pathological_long_strings_redacts_emails_and_keeps_the_rest(text, expected):
    assert redact({"note": text}) == {"note": expected}


# The pattern redaction used before it was made linear: a word it finds anything in is hidden.
QUADRATIC_REFERENCE = re.compile(r"ohk_(?:live|test|tok)_\S+|S[A-Z2-7]{55}|[^@\s]+@[^@\s]+\.[^@\s]+")
PIECES = ["a", "b", ".", "@", " ", "\n\t", "-", "ohk_test_", "S" + "A" * 55, "x@y.io"]


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=14).map("".join))
def test_redaction_hides_exactly_the_words_the_reference_pattern_finds_something_in(text):
    expected = "".join(
        REDACTED if index % 2 == 0 and QUADRATIC_REFERENCE.search(part) else part
        for index, part in enumerate(re.split(r"(\s+)", text))
    )
    assert redact(text) == expected


def test_audit_rows_through_the_api_carry_the_key_and_request_id(auth_client):
    client = auth_client(scopes=["support", "read"])
    response = client.post(
        "/api/v1/auth/api-keys",
        {"name": "audited", "scopes": ["read"]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="audit-1",
        HTTP_X_REQUEST_ID="req-audit-42",
    )
    assert response["X-Request-ID"] == "req-audit-42"
    row = AuditLog.objects.get(action="api_key.created", resource_id=response.json()["data"]["id"])
    assert row.correlation_id == "req-audit-42"
    assert row.actor_type == "API_KEY" and row.actor_id == client.api_key.id

    listed = client.get("/api/v1/audit/logs", {"resourceType": "apikey", "resourceId": row.resource_id}).json()
    assert [item["id"] for item in listed["data"]] == [row.public_id]
    assert listed["data"][0]["correlationId"] == "req-audit-42"


def test_audit_log_list_paginates_newest_first(auth_client):
    client = auth_client(scopes=["support"])
    rows = [make_row(resource_id=str(n)) for n in range(5)]
    page_one = client.get("/api/v1/audit/logs", {"resourceType": "Test", "limit": 2}).json()
    assert [item["resourceId"] for item in page_one["data"]] == ["4", "3"]
    assert page_one["hasMore"] is True and page_one["pagination"]["nextCursor"] == page_one["nextCursor"]
    page_two = client.get("/api/v1/audit/logs", {"resourceType": "Test", "limit": 2, "cursor": page_one["nextCursor"]})
    assert [item["resourceId"] for item in page_two.json()["data"]] == ["2", "1"]
    last = client.get("/api/v1/audit/logs", {"resourceType": "Test", "limit": 2, "cursor": rows[1].public_id}).json()
    assert [item["resourceId"] for item in last["data"]] == ["0"] and last["hasMore"] is False
    assert client.get("/api/v1/audit/logs", {"from": "yesterday"}).status_code == 400
