"""GET /users/{id}/balance reads the member's two ledger accounts in one query, scoped as before."""

import time

import pytest

from offerhub.api.authentication import api_key_cache_usable
from payments.ledger import ledger_account, ledger_post, user_accounts
from payments.models import LedgerAccount
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

STROOPS = 10_000_000


def fund(user, dollars: int, key: str) -> None:
    available, _ = user_accounts(user)
    external = ledger_account(kind=LedgerAccount.Kind.EXTERNAL_STELLAR)
    ledger_post(
        idempotency_key=key, kind="test", lines=[(external, -dollars * STROOPS), (available, dollars * STROOPS)]
    )


def balance(client, user) -> tuple[int, dict]:
    response = client.get(f"/api/v1/users/{user.public_id}/balance")
    return response.status_code, response.json()


def test_a_members_balance_is_one_query(auth_client, django_assert_num_queries):
    user = UserFactory()
    fund(user, 12, "fund-1")
    client = auth_client(scopes=["read"])
    deadline = time.monotonic() + 10
    while not api_key_cache_usable():  # the key's row comes from the process's cache once it listens
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert balance(client, user)[0] == 200
    with django_assert_num_queries(1):
        status, body = balance(client, user)
    assert status == 200
    assert body["available"] == "12.00" and body["reserved"] == "0.00" and body["total"] == "12.00"
    assert body["userId"] == body["user_id"] == user.public_id and body["updatedAt"]


def test_a_write_is_seen_by_the_next_read(auth_client):
    user = UserFactory()
    client = auth_client(scopes=["read"])
    assert balance(client, user)[1]["available"] == "0.00"  # no accounts yet: the service creates them
    fund(user, 5, "fund-a")
    assert balance(client, user)[1]["available"] == "5.00"
    fund(user, 7, "fund-b")
    assert balance(client, user)[1]["available"] == "12.00"


def test_a_marketplace_key_sees_only_its_members(auth_client):
    ours = UserFactory(marketplace_id="mkt-a")
    theirs = UserFactory(marketplace_id="mkt-b")
    fund(ours, 3, "fund-ours")
    fund(theirs, 4, "fund-theirs")
    client = auth_client(scopes=["read"], marketplace_id="mkt-a")
    assert balance(client, ours)[1]["available"] == "3.00"
    status, body = balance(client, theirs)
    assert status == 404 and body["error"]["code"] == "USER_NOT_FOUND"


def test_an_unknown_user_is_404(auth_client):
    client = auth_client(scopes=["read"])
    response = client.get("/api/v1/users/usr_nope/balance")
    assert response.status_code == 404 and response.json()["error"]["code"] == "USER_NOT_FOUND"
