"""API keys, the master key and short-lived tokens (API.md §1.2, §1.3, §3)."""

import pytest
from django.core.management import call_command

from offerhub.models import ApiKey, AuditLog
from offerhub.services import api_key_revoke

pytestmark = pytest.mark.django_db

ME = "/api/v1/auth/me"
KEYS = "/api/v1/auth/api-keys"


def error_code(response) -> str:
    return response.json()["error"]["code"]


def test_missing_authorization_is_401_unauthorized(api_client):
    response = api_client.get(ME)
    assert response.status_code == 401
    assert error_code(response) == "UNAUTHORIZED"
    assert response.json()["error"]["details"]["requestId"] == response["X-Request-ID"]


@pytest.mark.parametrize("header", ["Basic abc", "Bearer ", "Token ohk_test_key_x", "Bearer"])
def test_other_schemes_and_empty_tokens_are_401_unauthorized(api_client, header):
    response = api_client.get(ME, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert error_code(response) == "UNAUTHORIZED"


def test_unknown_or_malformed_key_is_401_invalid_api_key(api_client, make_api_key):
    _, secret = make_api_key()
    wrong_secret = secret[:-1] + ("0" if secret[-1] != "0" else "1")
    for raw in ("ohk_test_key_" + "A" * 32 + "_" + "0" * 48, "not-a-key", wrong_secret):
        response = api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {raw}")
        assert response.status_code == 401, raw
        assert error_code(response) == "INVALID_API_KEY"


def test_valid_key_identifies_itself_and_records_last_use(auth_client):
    client = auth_client(scopes=["read"], name="shop")
    response = client.get(ME)
    assert response.status_code == 200
    assert response.json()["data"] == {"apiKeyId": client.api_key.id, "apiKeyName": "shop", "scopes": ["read"]}
    client.api_key.refresh_from_db()
    assert client.api_key.last_used_at is not None
    assert client.get("/api/v1/me").json()["data"]["apiKeyId"] == client.api_key.id


def test_key_format_and_only_a_hash_is_stored(make_api_key):
    api_key, secret = make_api_key()
    prefix, environment, word, alnum, hex_secret = secret.split("_")
    assert (prefix, environment, word) == ("ohk", "test", "key")
    assert api_key.id == f"key_{alnum}"
    assert len(hex_secret) == 48
    stored = ApiKey.objects.filter(pk=api_key.pk).values().get()
    assert not any(hex_secret in str(value) for value in stored.values())


def test_wrong_scope_is_403_with_details(auth_client):
    client = auth_client(scopes=["read"])
    response = client.post(KEYS, {"name": "x", "scopes": ["read"]}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert response.status_code == 403
    body = response.json()["error"]
    assert body["code"] == "INSUFFICIENT_SCOPE"
    assert body["details"]["required_scope"] == "support"
    assert body["details"]["current_scopes"] == ["read"]


def test_write_does_not_imply_read(auth_client):
    response = auth_client(scopes=["write"]).get(KEYS)
    assert response.status_code == 403


def test_revoked_key_is_rejected_at_once(auth_client):
    client = auth_client(scopes=["read"])
    assert client.get(ME).status_code == 200
    api_key_revoke(api_key=client.api_key, actor_type="SYSTEM", actor_id="tests")
    response = client.get(ME)
    assert response.status_code == 401
    assert error_code(response) == "INVALID_API_KEY"


def test_master_key_has_every_scope(api_client, settings):
    settings.OFFERHUB_MASTER_KEY = "master-secret-for-tests"
    api_client.credentials(HTTP_AUTHORIZATION="Bearer master-secret-for-tests")
    assert api_client.get(ME).json()["data"]["apiKeyId"] == "master"
    response = api_client.post(
        KEYS, {"name": "first", "scopes": ["*"]}, format="json", HTTP_IDEMPOTENCY_KEY="bootstrap-1"
    )
    assert response.status_code == 201
    created = response.json()["data"]
    assert created["key"] == created["api_key"] == created["apiKey"]
    assert created["key"].startswith("ohk_test_key_")
    assert created["scopes"] == ["*"]


def test_empty_master_key_setting_never_matches(api_client, settings):
    settings.OFFERHUB_MASTER_KEY = ""
    assert api_client.get(ME, HTTP_AUTHORIZATION="Bearer  ").status_code == 401


def test_support_key_creates_lists_and_revokes_keys(auth_client):
    client = auth_client(scopes=["support", "read", "write"])
    created = client.post(
        KEYS, {"name": "integration", "scopes": ["read", "orders"]}, format="json", HTTP_IDEMPOTENCY_KEY="c1"
    ).json()["data"]
    assert created["scopes"] == ["read", "orders"]  # unknown scope strings are stored, grant nothing
    assert created["revokedAt"] is None

    listed = client.get(KEYS).json()
    assert [key["id"] for key in listed["data"]][:2] == [created["id"], client.api_key.id]
    assert all("key" not in key for key in listed["data"])

    revoked = client.delete(f"{KEYS}/{created['id']}", HTTP_IDEMPOTENCY_KEY="r1")
    assert revoked.status_code == 200
    assert revoked.json()["data"]["status"] == "revoked"
    again = client.delete(f"{KEYS}/{created['id']}", HTTP_IDEMPOTENCY_KEY="r2")
    assert again.json()["data"]["revokedAt"] == revoked.json()["data"]["revokedAt"]
    missing = client.delete(f"{KEYS}/key_unknown", HTTP_IDEMPOTENCY_KEY="r3")
    assert missing.status_code == 404 and error_code(missing) == "API_KEY_NOT_FOUND"

    actions = set(AuditLog.objects.filter(resource_id=created["id"]).values_list("action", flat=True))
    assert actions == {"api_key.created", "api_key.revoked"}


def test_a_key_cannot_grant_scopes_it_lacks(auth_client):
    client = auth_client(scopes=["support"])
    response = client.post(KEYS, {"name": "escalate", "scopes": ["*"]}, format="json", HTTP_IDEMPOTENCY_KEY="e1")
    assert response.status_code == 403
    assert error_code(response) == "INSUFFICIENT_SCOPE"
    assert not ApiKey.objects.filter(name="escalate").exists()


def test_key_creation_validation_names_the_field(auth_client):
    client = auth_client(scopes=["support"])
    response = client.post(KEYS, {"scopes": [], "colour": "red"}, format="json", HTTP_IDEMPOTENCY_KEY="v1")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    fields = {item["field"] for item in error["details"]["fields"]}
    assert fields == {"name", "scopes", "colour"}
    assert any(message.startswith("colour:") for message in error["details"]["validationErrors"])


def test_short_lived_token_carries_the_keys_scopes_and_dies_with_it(api_client, auth_client):
    client = auth_client(scopes=["read", "write"])
    minted = client.post(
        f"{KEYS}/{client.api_key.id}/token", {"ttl_seconds": 120}, format="json", HTTP_IDEMPOTENCY_KEY="t1"
    )
    assert minted.status_code == 201
    token = minted.json()["data"]["token"]
    assert token.startswith("ohk_tok_")

    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    me = api_client.get(ME).json()["data"]
    assert me["apiKeyId"] == client.api_key.id
    assert me["scopes"] == ["read", "write"]

    api_key_revoke(api_key=client.api_key, actor_type="SYSTEM", actor_id="tests")
    response = api_client.get(ME)
    assert response.status_code == 401
    assert error_code(response) == "INVALID_API_KEY"


def test_tampered_or_expired_token_is_rejected(api_client, auth_client):
    from offerhub.api.authentication import api_token_mint

    client = auth_client(scopes=["read"])
    expired, _ = api_token_mint(api_key=client.api_key, scopes=frozenset({"read"}), ttl_seconds=-10)
    good, _ = api_token_mint(api_key=client.api_key, scopes=frozenset({"read"}), ttl_seconds=60)
    for token in (expired, good[:-2] + ("AA" if not good.endswith("AA") else "BB")):
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        assert api_client.get(ME).status_code == 401


def test_write_key_cannot_mint_a_token_for_another_key(auth_client):
    mine = auth_client(scopes=["write"])
    other = auth_client(scopes=["support", "read", "write"])
    response = mine.post(f"{KEYS}/{other.api_key.id}/token", {}, format="json", HTTP_IDEMPOTENCY_KEY="t2")
    assert response.status_code == 403


def test_create_api_key_command_prints_the_key_once(capsys, db):
    call_command("create_api_key", "--name", "cli", "--scopes", "read,write,support")
    output = capsys.readouterr().out.strip().splitlines()
    secret = output[-1]
    assert secret.startswith("ohk_test_key_")
    api_key = ApiKey.objects.get(name="cli")
    assert api_key.scopes == ["read", "write", "support"]
    assert secret not in str(ApiKey.objects.filter(pk=api_key.pk).values().get())


def test_a_token_cannot_mint_tokens(api_client, auth_client):
    client = auth_client(scopes=["read", "write"])
    token = client.post(f"{KEYS}/{client.api_key.id}/token", {}, format="json", HTTP_IDEMPOTENCY_KEY="t3").json()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token['data']['token']}")
    response = api_client.post(f"{KEYS}/{client.api_key.id}/token", {}, format="json", HTTP_IDEMPOTENCY_KEY="t4")
    assert response.status_code == 403
