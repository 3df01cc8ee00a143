"""POST /orders/{id}/resolution/dispute over the real escrow flow."""

import pytest

from disputes.models import Dispute
from escrow.models import Escrow
from marketplace.models import Order
from marketplace.orders import SYSTEM, order_create, order_escrow_create, order_escrow_fund, order_reserve
from offerhub.models import Event
from tests.escrow.test_lifecycle import USD

pytestmark = pytest.mark.django_db(transaction=True)


def funded_order(buyer, seller) -> Order:
    order, _ = order_create(buyer=buyer, seller=seller, amount=10 * USD, title="Website", actor=SYSTEM)
    order_reserve(order=order, actor=SYSTEM)
    order_escrow_create(order=order, actor=SYSTEM)
    order_escrow_fund(order=order, actor=SYSTEM)
    order.refresh_from_db()
    assert order.status == Order.Status.IN_PROGRESS
    return order


def test_opening_a_dispute_freezes_order_and_escrow(chain, funded_user, trustless_work, auth_client):
    client = auth_client(scopes=["read", "write"])
    buyer, seller = funded_user("20.00"), funded_user("0")
    order = funded_order(buyer, seller)
    path = f"/api/v1/orders/{order.public_id}/resolution/dispute"

    empty = client.post(path, {}, format="json", HTTP_IDEMPOTENCY_KEY="e")
    assert empty.status_code == 400
    wrong = client.post(path, {"openedBy": "usr_x", "reason": "MEH"}, format="json", HTTP_IDEMPOTENCY_KEY="w")
    assert {d["field"] for d in wrong.json()["error"]["details"]["fields"]} == {"openedBy", "reason"}
    other = {"openedBy": "BUYER", "reason": "OTHER", "orderId": "ord_other"}
    assert client.post(path, other, format="json", HTTP_IDEMPOTENCY_KEY="o").status_code == 400

    body = {"openedBy": "BUYER", "reason": "NOT_DELIVERED", "evidence": ["https://example.com/chat.png"]}
    response = client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="d")
    assert response.status_code == 201, response.content
    data = response.json()["data"]
    assert data["id"].startswith("dsp_") and data["status"] == "OPEN" and data["openedBy"] == "BUYER"
    assert data["evidence"] == ["https://example.com/chat.png"]
    assert data["order"]["status"] == "DISPUTED" and data["order"]["dispute"]["id"] == data["id"]
    escrow = Escrow.objects.get(engagement_id=order.public_id)
    assert escrow.status == Escrow.Status.DISPUTED
    assert trustless_work.get_escrows([escrow.contract_id])[0]["flags"]["disputed"] is True
    types = list(Event.objects.filter(type__in=["dispute.opened", "order.disputed"]).values_list("type", flat=True))
    assert sorted(types) == ["dispute.opened", "order.disputed"]

    again = client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="d2")
    assert again.status_code == 409 and again.json()["error"]["code"] == "DISPUTE_ALREADY_OPEN"
    assert Dispute.objects.count() == 1
    assert client.get(f"/api/v1/orders/{order.public_id}").json()["data"]["dispute"]["status"] == "OPEN"


def test_a_dispute_needs_an_order_in_progress(funded_user, chain, trustless_work, auth_client):
    client = auth_client(scopes=["write"])
    buyer, seller = funded_user("20.00"), funded_user("0")
    order, _ = order_create(buyer=buyer, seller=seller, amount=10 * USD, title="Early", actor=SYSTEM)
    response = client.post(
        f"/api/v1/orders/{order.public_id}/resolution/dispute",
        {"openedBy": "SELLER", "reason": "OTHER"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="x",
    )
    assert response.status_code == 409 and response.json()["error"]["code"] == "INVALID_STATE"
    assert not Dispute.objects.exists()
