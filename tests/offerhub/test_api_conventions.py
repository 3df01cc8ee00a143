"""Transport conventions of API.md §1: envelopes, errors, routes, pagination, rate limits."""

import re
import secrets

import pytest

pytestmark = pytest.mark.django_db

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_success_envelope_and_timestamps(auth_client):
    response = auth_client(scopes=["read"]).get("/api/v1/auth/me")
    body = response.json()
    assert body["success"] is True
    assert body["meta"]["requestId"] == response["X-Request-ID"]
    assert TIMESTAMP.match(body["meta"]["timestamp"])


def test_unknown_route_is_not_found_envelope_before_auth(api_client):
    for method in ("get", "post", "delete"):
        response = getattr(api_client, method)("/api/v1/no/such/thing")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"
        assert "X-RateLimit-Limit" in response


def test_wrong_method_is_405_before_auth(api_client):
    response = api_client.put("/api/v1/auth/me")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_post_with_trailing_slash_is_served_not_redirected(auth_client):
    client = auth_client(scopes=["support", "read"])
    response = client.post(
        "/api/v1/auth/api-keys/", {"name": "slash", "scopes": ["read"]}, format="json", HTTP_IDEMPOTENCY_KEY="s1"
    )
    assert response.status_code == 201


def test_malformed_json_is_400_validation_error(auth_client):
    client = auth_client(scopes=["support"])
    response = client.generic(
        "POST", "/api/v1/auth/api-keys", "{not json", content_type="application/json", HTTP_IDEMPOTENCY_KEY="m1"
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"]["fields"][0]["field"] == "body"
    assert "Traceback" not in response.content.decode()


def test_body_must_be_an_object(auth_client):
    client = auth_client(scopes=["support"])
    response = client.post("/api/v1/auth/api-keys", ["a"], format="json", HTTP_IDEMPOTENCY_KEY="arr")
    assert response.status_code == 400


@pytest.mark.parametrize(("limit", "status"), [("0", 400), ("-1", 400), ("abc", 400), ("1000", 200), ("5", 200)])
def test_limit_validation_and_clamping(auth_client, limit, status):
    response = auth_client(scopes=["support"]).get("/api/v1/auth/api-keys", {"limit": limit})
    assert response.status_code == status
    if status == 400:
        assert response.json()["error"]["details"]["fields"][0]["field"] == "limit"


def test_unknown_cursor_gives_an_empty_page(auth_client):
    body = auth_client(scopes=["support"]).get("/api/v1/auth/api-keys", {"cursor": "key_nope"}).json()
    assert body["data"] == [] and body["hasMore"] is False and body["nextCursor"] is None


def test_rate_limit_per_key_with_headers_and_retry_after(auth_client, settings):
    settings.OFFERHUB_RATE_LIMIT_PER_MINUTE = 3
    settings.OFFERHUB_RATE_LIMIT_WINDOW_SECONDS = 3600  # no window rollover in the middle of the test
    client = auth_client(scopes=["read"])
    remaining = [int(client.get("/api/v1/auth/me")["X-RateLimit-Remaining"]) for _ in range(3)]
    assert remaining == [2, 1, 0]
    limited = client.get("/api/v1/auth/me")
    assert limited.status_code == 429
    error = limited.json()["error"]
    assert error["code"] == "RATE_LIMITED"
    assert error["details"]["limit"] == 3 and error["details"]["windowSeconds"] == 3600
    assert 1 <= int(limited["Retry-After"]) <= 3600
    assert limited["X-RateLimit-Limit"] == "3" and limited["X-RateLimit-Remaining"] == "0"
    # Another key has its own budget.
    assert auth_client(scopes=["read"]).get("/api/v1/auth/me").status_code == 200


def test_rate_limit_per_ip_without_a_valid_key(api_client, settings):
    settings.OFFERHUB_RATE_LIMIT_PER_MINUTE = 2
    settings.OFFERHUB_RATE_LIMIT_WINDOW_SECONDS = 3600
    # Counters live in Redis across runs: a fresh address per run keeps the test repeatable.
    ip = {"REMOTE_ADDR": f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"}
    statuses = [
        api_client.get("/api/v1/auth/me", HTTP_AUTHORIZATION="Bearer wrong", **ip).status_code for _ in range(3)
    ]
    assert statuses == [401, 401, 429]
    assert api_client.get("/api/v1/health", **ip).status_code == 429
    assert api_client.get("/api/v1/health", REMOTE_ADDR=f"2001:db8::{secrets.token_hex(3)}").status_code == 200


def test_refused_scopes_count_against_the_key_not_the_address(auth_client, settings):
    settings.OFFERHUB_RATE_LIMIT_PER_MINUTE = 2
    settings.OFFERHUB_RATE_LIMIT_WINDOW_SECONDS = 3600
    client = auth_client(scopes=["write"])
    address = {"REMOTE_ADDR": f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"}
    statuses = [client.get("/api/v1/auth/api-keys", **address).status_code for _ in range(3)]
    assert statuses == [403, 403, 429]
    assert client.get("/api/v1/health", **address).status_code == 200  # the address is not charged


@pytest.mark.parametrize("accept", ["application/xml", "text/html", "*/*", ""])
def test_any_accept_header_gets_json(api_client, accept):
    response = api_client.get("/api/v1/health", HTTP_ACCEPT=accept)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"


def test_impossible_dates_are_400_not_500(auth_client):
    response = auth_client(scopes=["support"]).get("/api/v1/audit/logs", {"from": "2026-02-30T00:00:00Z"})
    assert response.status_code == 400
    assert response.json()["error"]["details"]["fields"][0]["field"] == "from"
