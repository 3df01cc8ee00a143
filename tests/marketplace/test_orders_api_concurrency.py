"""Concurrent requests on one order: each is refused for its state, never a 500.

django-fsm's `refresh_from_db()` on a model with a protected FSM field switches the field's
protection off and on again for the whole class, so a refresh running in another thread at the
same moment raises "Direct status modification is not allowed". The API re-reads with a fresh
query instead; these tests fire a burst of requests through real threads and PostgreSQL.
"""

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from marketplace.models import Order
from marketplace.orders import SYSTEM, order_create, order_reserve
from payments.ledger import user_accounts
from tests.escrow.test_lifecycle import USD

pytestmark = pytest.mark.django_db(transaction=True)
THREADS = 30


def burst(secret: str, path: str, body: dict) -> list:
    """POST `path` from THREADS threads released together; the responses in any order."""
    barrier = threading.Barrier(THREADS)
    responses: list = []

    def run(n: int) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        try:
            barrier.wait(timeout=30)
            responses.append(client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=f"burst-{n}"))
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(responses) == THREADS
    return responses


def test_a_burst_of_reserves_on_a_reserved_order_is_all_409(chain, funded_user, make_api_key):
    buyer, seller = funded_user("20.00"), funded_user("0")
    order, _ = order_create(buyer=buyer, seller=seller, amount=10 * USD, title="Logo", actor=SYSTEM)
    order_reserve(order=order, actor=SYSTEM)
    _, secret = make_api_key(scopes=["read", "write"])

    responses = burst(secret, f"/api/v1/orders/{order.public_id}/reserve", {})

    answers = sorted({(r.status_code, r.json()["error"]["code"]) for r in responses})
    assert answers == [(409, "INVALID_STATE")], [r.content for r in responses if r.status_code != 409][:3]
    for response in responses:
        details = response.json()["error"]["details"]
        assert (details["currentState"], details["allowedStates"]) == ("FUNDS_RESERVED", ["ORDER_CREATED"])
    assert Order.objects.get(pk=order.pk).status == Order.Status.FUNDS_RESERVED
    assert user_accounts(buyer)[1].balance == 10 * USD  # held once


def test_a_burst_of_cancels_on_a_closed_order_is_all_409(make_api_key):
    from tests.factories import UserFactory

    order, _ = order_create(buyer=UserFactory(), seller=UserFactory(), amount=10 * USD, title="Logo", actor=SYSTEM)
    _, secret = make_api_key(scopes=["read", "write"])
    first = burst(secret, f"/api/v1/orders/{order.public_id}/cancel", {"reason": "changed my mind"})

    statuses = sorted(r.status_code for r in first)
    assert statuses == [201] + [409] * (THREADS - 1), [r.content for r in first if r.status_code >= 500][:3]
    assert {r.json()["error"]["details"]["currentState"] for r in first if r.status_code == 409} == {"CLOSED"}
