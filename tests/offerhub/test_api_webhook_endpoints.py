"""The webhook endpoints API (API.md §14): scopes, the secret shown once, validation naming the
field, tenancy (404 for another marketplace's), and the paginated delivery log."""

import itertools

import pytest
from django.utils import timezone

from hooks.models import OutgoingDelivery, WebhookEndpoint
from hooks.services import webhook_endpoint_create
from offerhub.models import AuditLog

BASE = "/api/v1/webhook-endpoints"
_keys = itertools.count()


def post(client, body, **extra):
    return client.post(BASE, body, format="json", HTTP_IDEMPOTENCY_KEY=f"whe-{next(_keys)}", **extra)


@pytest.fixture
def support(auth_client):
    return auth_client(scopes=["support"])


@pytest.mark.django_db
def test_create_shows_the_secret_once_and_lists_without_it(support):
    response = post(support, {"url": "https://hooks.example.com/offerhub", "description": "orders"})
    assert response.status_code == 201, response.json()
    created = response.json()["data"]
    assert created["id"].startswith("whe_") and len(created["id"]) == 36
    assert created["secret"].startswith("whsec_")
    assert created["events"] == ["*"] and created["enabled"] is True
    assert created["createdAt"].endswith("Z")
    assert WebhookEndpoint.objects.get(pk=created["id"]).secret == created["secret"]
    audit = AuditLog.objects.get(action="webhook_endpoint.created")
    assert audit.actor_id == support.api_key.id and created["secret"] not in str(audit.payload_after)

    listed = support.get(BASE).json()
    assert [item["id"] for item in listed["data"]] == [created["id"]]
    assert "secret" not in listed["data"][0] and listed["hasMore"] is False
    single = support.get(f"{BASE}/{created['id']}").json()["data"]
    assert single["url"] == "https://hooks.example.com/offerhub" and "secret" not in single


@pytest.mark.django_db
def test_event_filters_are_kept_and_checked(support):
    response = post(support, {"url": "https://hooks.example.com/x", "events": ["order.*", "dispute.opened"]})
    assert response.json()["data"]["events"] == ["order.*", "dispute.opened"]
    bad = post(support, {"url": "https://hooks.example.com/x", "events": ["Order Created"]})
    assert bad.status_code == 400
    assert bad.json()["error"]["details"]["fields"][0]["field"].startswith("events")
    empty = post(support, {"url": "https://hooks.example.com/x", "events": []})
    assert empty.status_code == 400


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://hooks.example.com/x"}, "url"),  # http outside DEBUG
        ({"url": "https://127.0.0.1/x"}, "url"),
        ({"url": "https://10.0.0.8/x"}, "url"),
        ({"url": "https://169.254.169.254/x"}, "url"),
        ({"url": "https://[::1]/x"}, "url"),
        ({"url": "https://localhost/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://e.com/" + "a" * 2100}, "url"),
        ({"url": 12}, "url"),
        ({}, "url"),
        ({"url": "https://hooks.example.com/x", "description": "d" * 256}, "description"),
        ({"url": "https://hooks.example.com/x", "secret": "whsec_mine"}, "secret"),
    ],
)
@pytest.mark.django_db
def test_bad_input_is_a_400_naming_the_field(support, settings, body, field):
    settings.DEBUG = False
    response = post(support, body)
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"]["fields"][0]["field"] == field
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_http_and_loopback_are_accepted_in_debug(support, settings):
    settings.DEBUG = True
    assert post(support, {"url": "http://127.0.0.1:8001/hooks"}).status_code == 201


@pytest.mark.django_db
def test_scope_support_is_required(auth_client):
    reader = auth_client(scopes=["read", "write"])
    assert post(reader, {"url": "https://hooks.example.com/x"}).json()["error"]["code"] == "INSUFFICIENT_SCOPE"
    assert reader.get(BASE).status_code == 403
    assert auth_client(scopes=["*"]).get(BASE).status_code == 200


@pytest.mark.django_db
def test_delete_then_it_is_gone(support):
    created = post(support, {"url": "https://hooks.example.com/x"}).json()["data"]
    response = support.delete(f"{BASE}/{created['id']}", HTTP_IDEMPOTENCY_KEY="del-1")
    assert response.status_code == 200
    assert response.json()["data"] == {"id": created["id"], "deleted": True}
    assert support.get(f"{BASE}/{created['id']}").json()["error"]["code"] == "NOT_FOUND"
    assert support.delete(f"{BASE}/{created['id']}", HTTP_IDEMPOTENCY_KEY="del-2").status_code == 404
    assert support.get(BASE).json()["data"] == []
    endpoint = WebhookEndpoint.objects.get(pk=created["id"])  # kept, with its log, for support
    assert not endpoint.enabled and endpoint.deleted_at is not None
    assert AuditLog.objects.filter(action="webhook_endpoint.deleted", resource_id=endpoint.id).exists()


@pytest.mark.django_db
def test_another_marketplaces_endpoints_are_invisible(auth_client):
    alpha = auth_client(scopes=["support"], marketplace_id="mkt_alpha")
    beta = auth_client(scopes=["support"], marketplace_id="mkt_beta")
    platform = auth_client(scopes=["support"])
    mine = post(alpha, {"url": "https://hooks.example.com/a"}).json()["data"]
    theirs = post(beta, {"url": "https://hooks.example.com/b"}).json()["data"]
    assert WebhookEndpoint.objects.get(pk=mine["id"]).marketplace_id == "mkt_alpha"
    assert [item["id"] for item in alpha.get(BASE).json()["data"]] == [mine["id"]]
    for path in (f"{BASE}/{theirs['id']}", f"{BASE}/{theirs['id']}/deliveries"):
        assert alpha.get(path).status_code == 404
    assert alpha.delete(f"{BASE}/{theirs['id']}", HTTP_IDEMPOTENCY_KEY="x-del").status_code == 404
    assert WebhookEndpoint.objects.get(pk=theirs["id"]).deleted_at is None
    assert {item["id"] for item in platform.get(BASE).json()["data"]} == {mine["id"], theirs["id"]}


@pytest.mark.django_db
def test_deliveries_are_listed_newest_first_with_cursors(support, django_assert_max_num_queries):
    endpoint = webhook_endpoint_create(
        url="https://hooks.example.com/x", events=["*"], actor_type="SYSTEM", actor_id="tests"
    )
    for number in range(3):
        OutgoingDelivery.objects.create(
            endpoint=endpoint,
            event_id=f"evt_{number}",
            event_type="order.created",
            body="{}",
            status="failed" if number == 0 else "pending",
            attempts=number,
            response_status=500 if number == 0 else None,
            next_attempt_at=timezone.now(),
            retry_until=timezone.now(),
        )
    with django_assert_max_num_queries(12):
        first = support.get(f"{BASE}/{endpoint.id}/deliveries?limit=2").json()
    assert [item["eventId"] for item in first["data"]] == ["evt_2", "evt_1"]
    assert first["hasMore"] is True and first["nextCursor"] == first["data"][-1]["id"]
    item = first["data"][0]
    assert set(item) == {
        "id",
        "eventId",
        "eventType",
        "attempt",
        "status",
        "responseStatus",
        "nextAttemptAt",
        "createdAt",
    }
    assert item["status"] == "pending" and item["attempt"] == 2 and item["nextAttemptAt"].endswith("Z")
    second = support.get(f"{BASE}/{endpoint.id}/deliveries?limit=2&cursor={first['nextCursor']}").json()
    assert [item["eventId"] for item in second["data"]] == ["evt_0"]
    assert second["data"][0] | {"id": "", "createdAt": ""} == {
        "id": "",
        "eventId": "evt_0",
        "eventType": "order.created",
        "attempt": 0,
        "status": "failed",
        "responseStatus": 500,
        "nextAttemptAt": None,
        "createdAt": "",
    }
    assert second["hasMore"] is False
    assert support.get(f"{BASE}/{endpoint.id}/deliveries?limit=0").status_code == 400


@pytest.mark.django_db
def test_the_endpoints_are_in_the_openapi_schema(api_client):
    schema = api_client.get("/api/v1/openapi.json").json()
    paths = schema["paths"]
    assert set(paths["/api/v1/webhook-endpoints"]) >= {"get", "post"}
    assert set(paths["/api/v1/webhook-endpoints/{endpoint_id}"]) >= {"get", "delete"}
    assert "get" in paths["/api/v1/webhook-endpoints/{endpoint_id}/deliveries"]
    created = paths["/api/v1/webhook-endpoints"]["post"]["responses"]["201"]
    ref = created["content"]["application/json"]["schema"]["properties"]["data"]["$ref"].rsplit("/", 1)[-1]
    assert "secret" in schema["components"]["schemas"][ref]["properties"]
    request = paths["/api/v1/webhook-endpoints"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    body = schema["components"]["schemas"][request["$ref"].rsplit("/", 1)[-1]]
    assert body["properties"]["url"]["maxLength"] == 2048 and body["additionalProperties"] is False
