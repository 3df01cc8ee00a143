"""Bad input on the users endpoints (API.md §4) is a 400 naming the field, never a 5xx,
and creates nobody; the original's alias and lower-case types keep working."""

import itertools

import pytest

from marketplace.models import User
from offerhub.models import AuditLog, Event

pytestmark = pytest.mark.django_db
keys = (f"users-input-{n}" for n in itertools.count())


def post(client, body):
    return client.post("/api/v1/users", body, format="json", HTTP_IDEMPOTENCY_KEY=next(keys))


def refused_fields(response) -> set[str]:
    details = response.json()["error"]["details"]
    return {details.get("field")} | {item["field"] for item in details.get("fields", [])}


def created_anything() -> tuple:
    return User.objects.count(), AuditLog.objects.count(), Event.objects.count()


@pytest.fixture
def writer(auth_client):
    return auth_client(scopes=["read", "write"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"externalUserId": "shop\x00-1"}, "externalUserId"),
        ({"external_user_id": "shop\x00-1"}, "external_user_id"),
        ({"externalUserId": "x" * 256}, "externalUserId"),
        ({"externalUserId": "x" * 100_000}, "externalUserId"),
        ({"externalUserId": 42}, "externalUserId"),
        ({"externalUserId": True}, "externalUserId"),
        ({"externalUserId": ["a"]}, "externalUserId"),
        ({"externalUserId": ""}, "externalUserId"),
        ({"externalUserId": None}, "externalUserId"),
        ({"external_user_id": 42}, "external_user_id"),
        ({"externalUserId": "e", "email": "a\x00b@example.test"}, "email"),
        ({"externalUserId": "e", "email": "a" * 250 + "@example.test"}, "email"),
        ({"externalUserId": "e", "email": 5}, "email"),
        ({"externalUserId": "e", "email": ""}, "email"),
        ({"externalUserId": "e", "type": "ADMIN"}, "type"),
        ({"externalUserId": "e", "type": "BUYER\x00"}, "type"),
        ({"externalUserId": "e", "type": 1}, "type"),
        ({"externalUserId": "e", "metadata": "x"}, "metadata"),
        ({"externalUserId": "e", "metadata": {"note": "a\x00"}}, "metadata"),
        ({"externalUserId": "e", "metadata": {"k\x00": 1}}, "metadata"),
        ({"externalUserId": "e", "metadata": {"note": "x" * 100_000}}, "metadata"),
        ({"externalUserId": "e", "metadata": {f"k{n}": n for n in range(51)}}, "metadata"),
        ({"externalUserId": "e", "metadata": {"deep": {"deeper": {"deepest": 1}}}}, "metadata"),
        ({"externalUserId": "e", "colour": "red"}, "colour"),
    ],
)
def test_user_creation_refuses_bad_input_naming_the_field(writer, body, field):
    before = created_anything()
    response = post(writer, body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert field in refused_fields(response)
    assert created_anything() == before


def test_user_bodies_must_be_json_objects(writer):
    form = writer.post("/api/v1/users", {"externalUserId": "form"}, HTTP_IDEMPOTENCY_KEY=next(keys))
    assert form.status_code == 415
    listed = writer.post("/api/v1/users", ["externalUserId"], format="json", HTTP_IDEMPOTENCY_KEY=next(keys))
    assert listed.status_code == 400 and "body" in refused_fields(listed)
    assert not User.objects.filter(external_user_id="form").exists()


def test_aliases_null_email_and_metadata_are_kept(writer):
    response = post(
        writer, {"external_user_id": "alias-1", "email": None, "type": "buyer", "metadata": {"tier": "gold", "n": 2}}
    )
    assert response.status_code == 201, response.content
    user = response.json()["data"]
    assert user["externalUserId"] == "alias-1" and user["email"] is None and user["type"] == "BUYER"
    assert user["metadata"] == {"tier": "gold", "n": 2}


def test_taken_email_is_409_naming_the_field(writer, user):
    response = post(writer, {"externalUserId": "new-one", "email": user.email.upper()})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "USER_ALREADY_EXISTS" and refused_fields(response) >= {"email"}


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ({"type": "admin"}, 400, "type"),
        ({"type": "seller"}, 200, None),
        ({"status": "gone"}, 400, "status"),
        ({"status": "active\x00"}, 400, "status"),
        ({"externalUserId": "x\x00"}, 400, "externalUserId"),
        ({"externalUserId": "x" * 256}, 400, "externalUserId"),
        ({"limit": "0"}, 400, "limit"),
        ({"limit": "1e3"}, 400, "limit"),
        ({"cursor": "usr_\x00"}, 400, "cursor"),
        ({"cursor": "usr_" + "a" * 300}, 400, "cursor"),
        ({"cursor": "usr_nope"}, 200, None),
    ],
)
def test_user_list_query_is_validated(writer, query, status, field):
    response = writer.get("/api/v1/users", query)
    assert response.status_code == status, response.content
    if field:
        assert field in refused_fields(response)


@pytest.mark.parametrize(
    ("user_id", "statuses"),
    [("usr_%00", {400}), ("usr_" + "a" * 300, {400, 404}), ("usr_" + "a" * 100, {404}), ("%E2%80%8B", {404})],
)
def test_bad_user_ids_in_the_path_are_4xx(writer, user_id, statuses):
    assert writer.get(f"/api/v1/users/{user_id}").status_code in statuses
