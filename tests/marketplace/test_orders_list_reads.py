"""GET /api/v1/orders: the parties' ids come with the order's row, and milestones and escrows are
looked up only for the orders that have them (marketplace/orders_selectors.py)."""

import time

import pytest

from disputes.models import Dispute
from escrow.models import Escrow
from marketplace.orders import SYSTEM, order_create
from offerhub.api.authentication import api_key_cache_usable
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

USD = 10_000_000


@pytest.fixture
def reader(auth_client):
    client = auth_client(scopes=["read"])
    deadline = time.monotonic() + 10
    while not api_key_cache_usable():  # the key's row comes from the process's cache once it listens
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return client


def escrow_for(order) -> Escrow:
    return Escrow.objects.create(
        engagement_id=order.public_id,
        type=Escrow.Type.MULTI,
        title=order.title,
        buyer=order.buyer,
        seller=order.seller,
        hold_reference=order.public_id,
        amount=order.amount,
    )


def listed(client, **params) -> list[dict]:
    response = client.get("/api/v1/orders", params)
    assert response.status_code == 200, response.content
    return response.json()["data"]


def test_a_page_of_plain_orders_is_one_query(reader, django_assert_num_queries):
    buyer, seller = UserFactory(), UserFactory()
    for n in range(5):
        order_create(buyer=buyer, seller=seller, amount=10 * USD, title=f"Plain {n}", actor=SYSTEM)
    listed(reader)  # the key's row, read once
    with django_assert_num_queries(1):
        orders = listed(reader, buyer_id=buyer.public_id)
    assert len(orders) == 5
    assert all(o["buyerId"] == buyer.public_id and o["sellerId"] == seller.public_id for o in orders)
    assert all(o["milestones"] == [] and o["escrow"] is None for o in orders)


def test_milestones_and_escrows_of_a_mixed_page_are_each_orders_own(reader, django_assert_num_queries):
    buyer, seller = UserFactory(), UserFactory()
    plain, _ = order_create(buyer=buyer, seller=seller, amount=10 * USD, title="Plain", actor=SYSTEM)
    staged, _ = order_create(
        buyer=buyer,
        seller=seller,
        amount=10 * USD,
        title="Staged",
        actor=SYSTEM,
        milestones=[
            {"ref": "b", "title": "Second", "amount": 6 * USD},
            {"ref": "a", "title": "First", "amount": 4 * USD},
        ],
    )
    escrow = escrow_for(staged)
    listed(reader)
    with django_assert_num_queries(3):  # orders, the staged order's milestones, its escrow
        orders = {o["title"]: o for o in listed(reader, buyer_id=buyer.public_id)}
    assert orders["Plain"]["milestones"] == [] and orders["Plain"]["escrow"] is None
    assert [m["ref"] for m in orders["Staged"]["milestones"]] == ["b", "a"]  # their given order
    assert orders["Staged"]["escrow"]["id"] == escrow.public_id
    assert orders["Staged"]["id"] == staged.public_id and orders["Plain"]["id"] == plain.public_id


def test_an_escrow_created_after_a_read_is_in_the_next_read(reader):
    buyer, seller = UserFactory(), UserFactory()
    order, _ = order_create(buyer=buyer, seller=seller, amount=10 * USD, title="Later", actor=SYSTEM)
    assert listed(reader, buyer_id=buyer.public_id)[0]["escrow"] is None
    escrow = escrow_for(order)
    assert listed(reader, buyer_id=buyer.public_id)[0]["escrow"]["id"] == escrow.public_id
    one = reader.get(f"/api/v1/orders/{order.public_id}").json()["data"]
    assert one["escrow"]["id"] == escrow.public_id and one["buyerId"] == buyer.public_id


def test_a_disputed_order_shows_its_dispute_and_the_others_none(reader, django_assert_num_queries):
    buyer, seller = UserFactory(), UserFactory()
    calm, _ = order_create(buyer=buyer, seller=seller, amount=10 * USD, title="Calm", actor=SYSTEM)
    contested, _ = order_create(buyer=buyer, seller=seller, amount=10 * USD, title="Contested", actor=SYSTEM)
    dispute = Dispute.objects.create(order=contested, opened_by="BUYER", reason="NOT_DELIVERED")
    listed(reader)
    with django_assert_num_queries(2):  # orders, the contested order's dispute
        orders = {o["title"]: o for o in listed(reader, buyer_id=buyer.public_id)}
    assert orders["Calm"]["dispute"] is None
    assert orders["Contested"]["dispute"]["id"] == dispute.public_id
    assert orders["Contested"]["dispute"]["orderId"] == contested.public_id
    one = reader.get(f"/api/v1/orders/{contested.public_id}").json()["data"]
    assert one["dispute"]["id"] == dispute.public_id
    assert reader.get(f"/api/v1/orders/{calm.public_id}").json()["data"]["dispute"] is None
