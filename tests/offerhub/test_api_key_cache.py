"""The process's cache of API key rows (offerhub/api/authentication.py): no key query per request,
and a revocation is honoured at once, in this process and when another node announces it."""

import time

import pytest
from django.db import transaction
from django.utils import timezone

from offerhub.api.authentication import api_key_cache_usable, api_token_mint
from offerhub.event_stream import api_key_revoked_notify
from offerhub.models import ApiKey
from offerhub.services import api_key_revoke

pytestmark = pytest.mark.django_db

ME = "/api/v1/auth/me"


def cache_ready() -> None:
    """With Redis the cache is used once its thread has subscribed to the revocation channel."""
    deadline = time.monotonic() + 10
    while not api_key_cache_usable():
        assert time.monotonic() < deadline, "the revocation listener never subscribed"
        time.sleep(0.05)


def test_a_known_key_is_not_read_from_the_database_again(auth_client, django_assert_num_queries):
    client = auth_client(scopes=["read"])
    cache_ready()
    assert client.get(ME).status_code == 200  # reads the row (and writes lastUsedAt once)
    with django_assert_num_queries(0):
        assert client.get(ME).status_code == 200


def test_a_cached_key_still_needs_its_secret(auth_client, api_client):
    client = auth_client(scopes=["read"])
    cache_ready()
    assert client.get(ME).status_code == 200
    secret = client._credentials["HTTP_AUTHORIZATION"].removeprefix("Bearer ")
    wrong = secret[:-1] + ("0" if secret[-1] != "0" else "1")
    response = api_client.get(ME, HTTP_AUTHORIZATION=f"Bearer {wrong}")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "INVALID_API_KEY"


def test_revocation_in_this_process_is_rejected_on_the_next_request(auth_client):
    client = auth_client(scopes=["read"])
    cache_ready()
    assert client.get(ME).status_code == 200
    assert client.get(ME).status_code == 200  # served from the cache
    api_key_revoke(api_key=client.api_key, actor_type="SYSTEM", actor_id="tests")
    assert client.get(ME).status_code == 401


def test_tokens_of_a_revoked_cached_key_are_rejected(auth_client):
    client = auth_client(scopes=["read", "write"])
    cache_ready()
    token, _ = api_token_mint(api_key=client.api_key, scopes=frozenset({"read"}), ttl_seconds=300)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get(ME).status_code == 200
    assert client.get(ME).status_code == 200
    api_key_revoke(api_key=client.api_key, actor_type="SYSTEM", actor_id="tests")
    assert client.get(ME).status_code == 401


def test_a_revocation_announced_by_another_node_is_honoured(auth_client, settings):
    """Another node commits the revocation and publishes it (api_key_revoked_notify): this process
    never ran api_key_revoke, yet stops accepting its cached copy of the key."""
    if not settings.REDIS_URL:
        pytest.skip("the revocation channel needs REDIS_URL")
    settings.OFFERHUB_API_KEY_CACHE_SECONDS = 300  # only the announcement can end it within the test
    client = auth_client(scopes=["read"])
    cache_ready()
    assert client.get(ME).status_code == 200
    assert client.get(ME).status_code == 200  # served from the cache
    with transaction.atomic():  # the other node's write, not this process's service
        ApiKey.objects.filter(pk=client.api_key.pk).update(revoked_at=timezone.now())
    api_key_revoked_notify(key_id=client.api_key.pk)
    deadline = time.monotonic() + 10
    while client.get(ME).status_code == 200:
        assert time.monotonic() < deadline, "the revoked key was still accepted"
        time.sleep(0.05)
    assert client.get(ME).status_code == 401


def test_the_cache_can_be_turned_off(auth_client, settings, django_assert_num_queries):
    settings.OFFERHUB_API_KEY_CACHE_SECONDS = 0
    client = auth_client(scopes=["read"])
    assert client.get(ME).status_code == 200
    with django_assert_num_queries(1):  # the key's row, every time
        assert client.get(ME).status_code == 200


def test_a_row_read_before_a_revocation_was_heard_is_not_kept(make_api_key):
    """A request read the row (still active), the revocation was heard, then the request stores
    what it read: the stale row must not be kept."""
    from offerhub.api.authentication import _api_key_cache

    api_key, _ = make_api_key(scopes=["read"])
    generation = _api_key_cache.generation
    row = ApiKey.objects.get(pk=api_key.pk)  # read before the revocation
    api_key_revoke(api_key=api_key, actor_type="SYSTEM", actor_id="tests")  # heard here
    _api_key_cache.put(api_key.pk, row, generation)
    assert _api_key_cache.get(api_key.pk) is None
    _api_key_cache.put(api_key.pk, row, _api_key_cache.generation)  # read after: it would be kept
    assert _api_key_cache.get(api_key.pk) is row
    _api_key_cache.forget(api_key.pk)
