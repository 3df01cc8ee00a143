"""Idempotency-Key exactly as API.md §1.4 specifies."""

import json
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from offerhub.api.idempotency import request_fingerprint
from offerhub.models import ApiKey, AuditLog, IdempotencyRecord
from offerhub.tasks import idempotency_reap_expired
from tests.offerhub.idempotency_urls import HeldEffectView

KEYS = "/api/v1/auth/api-keys"


def create_key(client, body, key="idem-1", **extra):
    return client.post(KEYS, body, format="json", HTTP_IDEMPOTENCY_KEY=key, **extra)


@pytest.mark.django_db
def test_replay_returns_the_same_status_and_byte_identical_body(auth_client):
    client = auth_client(scopes=["support", "read"])
    first = create_key(client, {"name": "replayed", "scopes": ["read"]})
    second = create_key(client, {"scopes": ["read"], "name": "replayed"})  # same JSON, other key order
    assert first.status_code == second.status_code == 201
    assert second.content == first.content
    assert second["Idempotency-Replay"] == "true"
    assert "Idempotency-Replay" not in first
    assert first["X-Idempotency-Key"] == second["X-Idempotency-Key"] == "idem-1"
    assert ApiKey.objects.filter(name="replayed").count() == 1


@pytest.mark.django_db
def test_same_key_with_a_different_body_is_409_reused(auth_client):
    client = auth_client(scopes=["support", "read"])
    create_key(client, {"name": "one", "scopes": ["read"]})
    response = create_key(client, {"name": "two", "scopes": ["read"]})
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert error["details"]["idempotency_key"] == "idem-1"
    assert not ApiKey.objects.filter(name="two").exists()


@pytest.mark.django_db
def test_same_key_on_another_path_is_409_reused(auth_client):
    client = auth_client(scopes=["support", "read", "write"])
    create_key(client, {"name": "one", "scopes": ["read"]}, key="shared")
    response = client.post(f"{KEYS}/{client.api_key.id}/token", {}, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"


@pytest.mark.django_db
def test_missing_key_is_400_naming_the_header(auth_client):
    client = auth_client(scopes=["support", "read"])
    response = client.post(KEYS, {"name": "nokey", "scopes": ["read"]}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"]["header"] == "Idempotency-Key"
    assert error["details"]["reason"] == "missing"
    assert not ApiKey.objects.filter(name="nokey").exists()


@pytest.mark.django_db
def test_compatibility_mode_runs_mutations_without_a_key(auth_client, settings):
    settings.OFFERHUB_IDEMPOTENCY_REQUIRED = False
    client = auth_client(scopes=["support", "read"])
    response = client.post(KEYS, {"name": "compat", "scopes": ["read"]}, format="json")
    assert response.status_code == 201
    assert "X-Idempotency-Key" not in response


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["", "x" * 256, "tab\there", "naïve"])
def test_malformed_key_is_400(auth_client, bad):
    client = auth_client(scopes=["support", "read"])
    response = client.generic(
        "POST",
        KEYS,
        '{"name": "m", "scopes": ["read"]}',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=bad,
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"]["header"] == "Idempotency-Key"


@pytest.mark.django_db
def test_any_printable_string_is_accepted_not_only_uuids(auth_client):
    client = auth_client(scopes=["support", "read"])
    assert create_key(client, {"name": "sdk", "scopes": ["read"]}, key="unique-operation-123").status_code == 201


@pytest.mark.django_db
def test_records_are_scoped_per_api_key(auth_client):
    first, second = auth_client(scopes=["support", "read"]), auth_client(scopes=["support", "read"])
    a = create_key(first, {"name": "a", "scopes": ["read"]}, key="same")
    b = create_key(second, {"name": "a", "scopes": ["read"]}, key="same")
    assert a.status_code == b.status_code == 201
    assert "Idempotency-Replay" not in b
    assert a.json()["data"]["id"] != b.json()["data"]["id"]


@pytest.mark.django_db
def test_auth_runs_before_idempotency(api_client):
    response = api_client.post(KEYS, {}, format="json", HTTP_IDEMPOTENCY_KEY="anon")
    assert response.status_code == 401
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db
@pytest.mark.urls("tests.offerhub.idempotency_urls")
def test_4xx_is_stored_and_replayed_and_its_writes_rolled_back(auth_client):
    client = auth_client(scopes=["write"])
    first = client.post("/api/v1/test/failing", {}, format="json", HTTP_IDEMPOTENCY_KEY="f1")
    second = client.post("/api/v1/test/failing", {}, format="json", HTTP_IDEMPOTENCY_KEY="f1")
    assert first.status_code == second.status_code == 422
    assert second.content == first.content
    assert second["Idempotency-Replay"] == "true"
    assert not AuditLog.objects.filter(action="test.effect").exists()


@pytest.mark.django_db
@pytest.mark.urls("tests.offerhub.idempotency_urls")
def test_5xx_is_not_stored_so_the_key_can_be_retried(auth_client):
    client = auth_client(scopes=["write"])
    first = client.post("/api/v1/test/failing", {"mode": "crash"}, format="json", HTTP_IDEMPOTENCY_KEY="c1")
    assert first.status_code == 500
    assert first.json()["error"]["code"] == "INTERNAL_ERROR"
    assert "exploded" not in first.content.decode()  # no internals leak
    assert not IdempotencyRecord.objects.filter(key="c1").exists()
    assert not AuditLog.objects.filter(action="test.effect").exists()
    second = client.post("/api/v1/test/failing", {"mode": "crash"}, format="json", HTTP_IDEMPOTENCY_KEY="c1")
    assert "Idempotency-Replay" not in second


def _post_json_in_thread(secret: str, path: str, key: str, body: dict, results: list) -> threading.Thread:
    def run():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        try:
            results.append(client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key))
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _post_in_thread(secret: str, path: str, key: str, results: list) -> threading.Thread:
    return _post_json_in_thread(secret, path, key, {}, results)


def _fingerprint_of_create(body: dict) -> str:
    return request_fingerprint(method="POST", path=KEYS, query="", body=json.dumps(body).encode())


@pytest.mark.django_db(transaction=True)
@pytest.mark.urls("tests.offerhub.idempotency_urls")
def test_concurrent_requests_with_one_key_make_one_effect_and_one_in_progress(make_api_key):
    _, secret = make_api_key(scopes=["write"])
    HeldEffectView.entered.clear()
    HeldEffectView.release.clear()
    first_results: list = []
    first = _post_in_thread(secret, "/api/v1/test/held", "race", first_results)
    try:
        assert HeldEffectView.entered.wait(timeout=10), "first request never reached its handler"
        second_results: list = []
        _post_in_thread(secret, "/api/v1/test/held", "race", second_results).join(timeout=10)
        (second,) = second_results
        assert second.status_code == 409
        assert second.json()["error"]["code"] == "IDEMPOTENCY_KEY_IN_PROGRESS"
    finally:
        HeldEffectView.release.set()
        first.join(timeout=20)
    (winner,) = first_results
    assert winner.status_code == 201
    assert AuditLog.objects.filter(action="test.effect").count() == 1

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    replay = client.post("/api/v1/test/held", {}, format="json", HTTP_IDEMPOTENCY_KEY="race")
    assert replay.status_code == 201 and replay.content == winner.content
    assert AuditLog.objects.filter(action="test.effect").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_burst_on_the_real_endpoint_creates_one_key(make_api_key):
    _, secret = make_api_key(scopes=["support", "read"], name="caller")
    barrier = threading.Barrier(8)
    results: list = []

    def run():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        barrier.wait()
        try:
            results.append(create_key(client, {"name": "burst", "scopes": ["read"]}, key="burst"))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 8
    assert ApiKey.objects.filter(name="burst").count() == 1
    created_ids = {r.json()["data"]["id"] for r in results if r.status_code == 201}
    assert len(created_ids) == 1
    assert {r.status_code for r in results} <= {201, 409}
    conflicts = [r.json()["error"]["code"] for r in results if r.status_code == 409]
    assert set(conflicts) <= {"IDEMPOTENCY_KEY_IN_PROGRESS"}


def _post_while_row_locked(record_pk: int, secret: str, body: dict):
    """POST with the key "slow" while another transaction holds the record's row lock."""
    holding, release, results = threading.Event(), threading.Event(), []

    def holder():
        try:
            with transaction.atomic():
                IdempotencyRecord.objects.select_for_update().get(pk=record_pk)
                holding.set()
                release.wait(timeout=10)
        finally:
            connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert holding.wait(timeout=10)
        _post_json_in_thread(secret, KEYS, "slow", body, results).join(timeout=10)
    finally:
        release.set()
        thread.join(timeout=10)
    (response,) = results
    return response


@pytest.mark.django_db(transaction=True)
def test_a_live_holder_keeps_its_key_however_long_it_runs(make_api_key):
    """Past its claim window, a request still holding the row lock is alive: no takeover."""
    api_key, secret = make_api_key(scopes=["support", "read"])
    record = IdempotencyRecord.objects.create(
        principal_id=api_key.id,
        key="slow",
        fingerprint="x",
        method="POST",
        path=KEYS,
        locked_until=timezone.now() - timedelta(minutes=5),
        expires_at=timezone.now() + timedelta(hours=1),
    )
    body = {"name": "late", "scopes": ["read"]}

    first = _post_while_row_locked(record.pk, secret, body)
    assert first.status_code == 409
    assert first.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"  # x is not this body's fingerprint
    IdempotencyRecord.objects.filter(pk=record.pk).update(fingerprint=_fingerprint_of_create(body))
    second = _post_while_row_locked(record.pk, secret, body)
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "IDEMPOTENCY_KEY_IN_PROGRESS"
    assert not ApiKey.objects.filter(name="late").exists()


@pytest.mark.django_db
def test_a_dead_holders_key_is_taken_over_and_runs_once(auth_client):
    """PROCESSING, unlocked and past its claim window: the crashed request left nothing behind."""
    client = auth_client(scopes=["support", "read"])
    body = {"name": "after-crash", "scopes": ["read"]}
    IdempotencyRecord.objects.create(
        principal_id=client.api_key.id,
        key="dead",
        fingerprint=_fingerprint_of_create(body),
        method="POST",
        path=KEYS,
        locked_until=timezone.now() - timedelta(seconds=1),
        expires_at=timezone.now() + timedelta(hours=1),
    )
    first = create_key(client, body, key="dead")
    again = create_key(client, body, key="dead")
    assert first.status_code == 201 and "Idempotency-Replay" not in first
    assert again["Idempotency-Replay"] == "true" and again.content == first.content
    assert ApiKey.objects.filter(name="after-crash").count() == 1


@pytest.mark.django_db
def test_a_fresh_claim_not_yet_locked_is_in_progress(auth_client):
    client = auth_client(scopes=["support", "read"])
    body = {"name": "racing", "scopes": ["read"]}
    IdempotencyRecord.objects.create(
        principal_id=client.api_key.id,
        key="fresh",
        fingerprint=_fingerprint_of_create(body),
        method="POST",
        path=KEYS,
        locked_until=timezone.now() + timedelta(seconds=30),
        expires_at=timezone.now() + timedelta(hours=1),
    )
    response = create_key(client, body, key="fresh")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "IDEMPOTENCY_KEY_IN_PROGRESS"


@pytest.mark.django_db
def test_public_endpoints_ignore_the_header(api_client):
    response = api_client.post("/api/v1/no/such/route", {}, format="json", HTTP_IDEMPOTENCY_KEY="public")
    assert response.status_code == 404
    assert "X-Idempotency-Key" not in response
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db
def test_the_key_is_echoed_only_when_applied_and_stamped_on_audit_rows(auth_client):
    reader = auth_client(scopes=["read"])
    refused = reader.post(KEYS, {"name": "x", "scopes": ["read"]}, format="json", HTTP_IDEMPOTENCY_KEY="nope")
    assert refused.status_code == 403 and "X-Idempotency-Key" not in refused
    client = auth_client(scopes=["support", "read"])
    created = create_key(client, {"name": "stamped", "scopes": ["read"]}, key="stamp-1")
    assert created["X-Idempotency-Key"] == "stamp-1"
    row = AuditLog.objects.get(action="api_key.created", resource_id=created.json()["data"]["id"])
    assert row.idempotency_key == "stamp-1"


@pytest.mark.django_db
def test_retention_windows_and_the_reaper(auth_client):
    client = auth_client(scopes=["support", "read"])
    create_key(client, {"name": "old", "scopes": ["read"]}, key="old")
    record = IdempotencyRecord.objects.get(key="old")
    assert timedelta(hours=23) < record.expires_at - record.created_at <= timedelta(hours=24)

    IdempotencyRecord.objects.filter(pk=record.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    # Expired but not yet reaped: the key is new again.
    again = create_key(client, {"name": "old", "scopes": ["read"]}, key="old")
    assert again.status_code == 201 and "Idempotency-Replay" not in again
    assert ApiKey.objects.filter(name="old").count() == 2

    IdempotencyRecord.objects.filter(key="old").update(expires_at=timezone.now() - timedelta(seconds=1))
    forever = IdempotencyRecord.objects.create(
        principal_id="p", key="dispute", fingerprint="f", method="POST", path="/x", expires_at=None
    )
    assert idempotency_reap_expired.delay().get() == 1
    assert not IdempotencyRecord.objects.filter(key="old").exists()
    assert IdempotencyRecord.objects.filter(pk=forever.pk).exists()
