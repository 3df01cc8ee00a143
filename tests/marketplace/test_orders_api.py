"""Orders and resolution endpoints (API.md §8, §9), the escrow steps over the sandbox chain."""

import itertools

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from stellar_sdk import TransactionBuilder

from escrow.models import Escrow, EscrowStep
from escrow.signing import envelope_sign
from marketplace.models import Order
from marketplace.orders import SYSTEM, order_create, seller_net
from offerhub.models import Event
from payments.ledger import user_accounts
from payments.models import Hold
from payments.stellar import horizon, usdc
from tests.escrow.test_lifecycle import USD, ledger_equals_chain
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
keys = (f"order-{n}" for n in itertools.count())


def post(client, path, body=None, *, key=None):
    return client.post(f"/api/v1{path}", body or {}, format="json", HTTP_IDEMPOTENCY_KEY=key or next(keys))


def error(response) -> dict:
    return response.json()["error"]


@pytest.fixture
def writer(auth_client):
    return auth_client(scopes=["read", "write"])


def create(client, buyer, seller, amount="30.00", **extra) -> dict:
    body = {"buyer_id": buyer.public_id, "seller_id": seller.public_id, "amount": amount, "title": "Logo", **extra}
    response = post(client, "/orders", body)
    assert response.status_code == 201, response.content
    return response.json()["data"]


def in_progress(client, buyer, seller, amount="30.00", **extra) -> dict:
    order = create(client, buyer, seller, amount, **extra)
    for step in ("reserve", "escrow", "escrow/fund"):
        response = post(client, f"/orders/{order['id']}/{step}")
        assert response.status_code == 201, (step, response.content)
    return response.json()["data"]


def test_the_whole_lifecycle_through_the_api(chain, funded_user, trustless_work, writer):
    buyer, seller = funded_user("100.00"), funded_user("0")
    milestones = [
        {"ref": "draft", "description": "Draft", "amount": "10.00"},
        {"ref": "final", "description": "Final", "amount": "20.00"},
    ]
    order = create(writer, buyer, seller, client_order_ref="shop-1", metadata={"cart": 7}, milestones=milestones)
    assert order["id"].startswith("ord_") and order["status"] == "ORDER_CREATED"
    assert (order["amount"], order["currency"], order["clientOrderRef"]) == ("30.00", "USD", "shop-1")
    assert (order["buyerId"], order["sellerId"], order["metadata"]) == (buyer.public_id, seller.public_id, {"cart": 7})
    assert order["escrow"] is None and order["dispute"] is None and order["description"] is None
    first = order["milestones"][0]
    assert (first["milestoneRef"], first["ref"], first["title"], first["description"]) == (
        "draft",
        "draft",
        "Draft",
        "Draft",
    )
    assert (first["amount"], first["status"], first["completedAt"], first["releasedAt"]) == (
        "10.00",
        "OPEN",
        None,
        None,
    )
    assert order["createdAt"].endswith("Z") and len(order["createdAt"]) == 24

    path = f"/orders/{order['id']}"
    reserved = post(writer, f"{path}/reserve", {"amount": "30.00"})
    assert reserved.status_code == 201 and reserved.json()["data"]["status"] == "FUNDS_RESERVED"
    assert user_accounts(buyer)[1].balance == 30 * USD

    escrow = post(writer, f"{path}/escrow")
    assert escrow.status_code == 201, escrow.content
    data = escrow.json()["data"]
    assert data["status"] == "ESCROW_FUNDING"
    assert data["escrow"]["status"] == "CREATED" and data["escrow"]["type"] == "multi-release"
    assert data["escrow"]["id"].startswith("esc_") and data["escrow"]["trustlessContractId"]
    again = post(writer, f"{path}/escrow")
    assert again.status_code == 409 and error(again)["code"] == "ESCROW_ALREADY_EXISTS"

    funded = post(writer, f"{path}/escrow/fund")
    assert funded.status_code == 201, funded.content
    data = funded.json()["data"]
    assert data["status"] == "IN_PROGRESS" and data["escrow"]["status"] == "FUNDED" and data["escrow"]["fundedAt"]
    again = post(writer, f"{path}/escrow/fund")
    assert again.status_code == 409 and error(again)["code"] == "ESCROW_ALREADY_FUNDED"

    early = post(writer, f"{path}/resolution/release")
    assert early.status_code == 409 and error(early)["code"] == "INVALID_STATE"
    assert error(early)["details"]["open"] == ["draft", "final"]
    for ref in ("draft", "final"):
        done = post(writer, f"{path}/milestones/{ref}/complete")
        assert done.status_code == 201, done.content
        assert done.json()["data"]["status"] == "COMPLETED" and done.json()["data"]["completedAt"]
    twice = post(writer, f"{path}/milestones/draft/complete")
    assert twice.status_code == 409 and error(twice)["details"]["currentState"] == "COMPLETED"
    missing = post(writer, f"{path}/milestones/nope/complete")
    assert missing.status_code == 404 and error(missing)["code"] == "MILESTONE_NOT_FOUND"

    released = post(writer, f"{path}/resolution/release", {"reason": "Great work", "requestedBy": "usr_shop_admin"})
    assert released.status_code == 200, released.content
    data = released.json()["data"]
    assert data["status"] == "CLOSED" and data["escrow"]["status"] == "RELEASED" and data["escrow"]["releasedAt"]
    assert [m["status"] for m in data["milestones"]] == ["RELEASED", "RELEASED"]
    assert writer.get(f"/api/v1{path}").json()["data"] == data
    assert user_accounts(seller)[0].balance == seller_net(amount=10 * USD) + seller_net(amount=20 * USD)
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(engagement_id=order["id"]), buyer, seller)

    types = list(Event.objects.filter(aggregate_id=order["id"]).order_by("id").values_list("type", flat=True))
    for expected in (
        "order.created",
        "order.funds_reserved",
        "order.escrow_creating",
        "escrow.created",
        "order.escrow_funding",
        "escrow.funded",
        "order.escrow_funded",
        "order.in_progress",
        "escrow.milestone_completed",
        "order.release_requested",
        "escrow.released",
        "order.released",
        "order.closed",
    ):
        assert expected in types, expected
    requested = Event.objects.get(aggregate_id=order["id"], type="order.release_requested").payload
    assert (requested["requestedBy"], requested["reason"]) == ("usr_shop_admin", "Great work")


def test_milestones_are_released_one_by_one(chain, funded_user, trustless_work, writer):
    buyer, seller = funded_user("50.00"), funded_user("0")
    milestones = [
        {"milestone_ref": "m1", "title": "Wireframes", "amount": "5.00"},
        {"milestone_ref": "m2", "title": "Site", "amount": "15.00"},
    ]
    order = in_progress(writer, buyer, seller, "20.00", milestones=milestones)
    path = f"/orders/{order['id']}"
    listed = writer.get(f"/api/v1{path}/milestones").json()["data"]
    assert [(m["ref"], m["amount"], m["status"]) for m in listed] == [("m1", "5.00", "OPEN"), ("m2", "15.00", "OPEN")]

    assert post(writer, f"{path}/milestones/m1/complete").status_code == 201
    first = post(writer, f"{path}/milestones/m1/release")
    assert first.status_code == 200, first.content
    data = first.json()["data"]
    assert data["status"] == "IN_PROGRESS" and data["escrow"]["status"] == "FUNDED"
    assert [m["status"] for m in data["milestones"]] == ["RELEASED", "OPEN"]
    assert data["milestones"][0]["releasedAt"]
    assert user_accounts(seller)[0].balance == seller_net(amount=5 * USD)

    not_done = post(writer, f"{path}/milestones/m2/release")
    assert not_done.status_code == 409 and error(not_done)["code"] == "INVALID_STATE"
    assert error(not_done)["details"]["currentState"] == "OPEN"
    assert error(not_done)["details"]["allowedStates"] == ["COMPLETED"]
    assert post(writer, f"{path}/milestones/m2/complete").status_code == 201
    last = post(writer, f"{path}/milestones/m2/release")
    assert last.status_code == 200, last.content
    assert last.json()["data"]["status"] == "CLOSED" and last.json()["data"]["escrow"]["status"] == "RELEASED"
    assert user_accounts(seller)[0].balance == seller_net(amount=5 * USD) + seller_net(amount=15 * USD)
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(engagement_id=order["id"]), buyer, seller)


def test_a_refund_needs_a_reason_and_returns_the_escrow_to_the_buyer(chain, funded_user, trustless_work, writer):
    buyer, seller = funded_user("40.00"), funded_user("0")
    order = in_progress(writer, buyer, seller, "25.00")
    assert order["escrow"]["type"] == "single-release" and order["milestones"] == []
    path = f"/orders/{order['id']}/resolution/refund"
    no_reason = post(writer, path)
    assert no_reason.status_code == 400 and "reason" in {f["field"] for f in error(no_reason)["details"]["fields"]}
    refunded = post(writer, path, {"reason": "Seller cannot deliver"})
    assert refunded.status_code == 200, refunded.content
    data = refunded.json()["data"]
    assert data["status"] == "CLOSED" and data["escrow"]["status"] == "REFUNDED" and data["escrow"]["refundedAt"]
    escrow = Escrow.objects.get(engagement_id=order["id"])
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)
    assert Event.objects.filter(aggregate_id=order["id"], type="order.refunded").exists()
    late = post(writer, f"/orders/{order['id']}/resolution/release")
    assert late.status_code == 409 and error(late)["details"] == {
        "currentState": "CLOSED",
        "allowedStates": ["IN_PROGRESS"],
        "requestId": late["X-Request-ID"],
    }


def test_cancel_releases_the_hold_and_wrong_states_are_409(chain, funded_user, writer):
    buyer, seller = funded_user("50.00"), funded_user("0")
    order = create(writer, buyer, seller, "20.00")
    path = f"/orders/{order['id']}"
    for step, code in (
        ("escrow", "INVALID_STATE"),
        ("escrow/fund", "ESCROW_NOT_READY"),
        ("resolution/release", "INVALID_STATE"),
    ):
        response = post(writer, f"{path}/{step}")
        assert response.status_code == 409 and error(response)["code"] == code, (step, response.content)
    wrong = post(writer, f"{path}/escrow")
    assert error(wrong)["details"]["currentState"] == "ORDER_CREATED"
    assert error(wrong)["details"]["allowedStates"] == ["FUNDS_RESERVED"]
    mismatch = post(writer, f"{path}/reserve", {"amount": "19.00"})
    assert mismatch.status_code == 422 and error(mismatch)["code"] == "RESERVE_MISMATCH_AMOUNT"
    assert post(writer, f"{path}/reserve").status_code == 201
    second = post(writer, f"{path}/reserve")
    assert second.status_code == 409 and error(second)["code"] == "INVALID_STATE"
    assert user_accounts(buyer)[1].balance == 20 * USD

    canceled = post(writer, f"{path}/cancel", {"reason": "changed my mind"})
    assert canceled.status_code == 201 and canceled.json()["data"]["status"] == "CLOSED"
    assert user_accounts(buyer)[0].balance == 50 * USD and user_accounts(buyer)[1].balance == 0
    event = Event.objects.get(aggregate_id=order["id"], type="order.canceled").payload
    assert event["fundsReleased"] is True and event["reason"] == "changed my mind"
    again = post(writer, f"{path}/cancel")
    assert again.status_code == 409 and error(again)["code"] == "INVALID_STATE"


def test_insufficient_funds_is_422_and_holds_nothing(chain, funded_user, writer):
    buyer, seller = funded_user("5.00"), funded_user("0")
    order = create(writer, buyer, seller, "20.00")
    short = post(writer, f"/orders/{order['id']}/reserve")
    assert short.status_code == 422 and error(short)["code"] == "INSUFFICIENT_FUNDS"
    assert error(short)["details"]["requested"] == "20.00" and error(short)["details"]["available"] == "5.00"
    assert Order.objects.get(public_id=order["id"]).status == Order.Status.ORDER_CREATED
    assert user_accounts(buyer)[1].balance == 0 and not Hold.objects.filter(reference=order["id"]).exists()


def test_a_fund_the_contract_refuses_keeps_the_hold_and_can_be_retried(chain, funded_user, trustless_work, writer):
    buyer, seller = funded_user("30.00"), funded_user("0")
    order = create(writer, buyer, seller, "10.00")
    path = f"/orders/{order['id']}"
    assert post(writer, f"{path}/reserve").status_code == 201
    assert post(writer, f"{path}/escrow").status_code == 201
    # The buyer's USDC leaves by another door (the wallet's key used outside OfferHub).
    outside = chain.outside_account()
    payment = (
        TransactionBuilder(horizon().load_account(buyer.wallet.public_key), chain.passphrase, base_fee=100)
        .append_payment_op(outside.public_key, usdc(), "25")
        .set_timeout(300)
        .build()
    )
    horizon().submit_transaction(envelope_sign(envelope=payment, signer=buyer.wallet))
    refused = post(writer, f"{path}/escrow/fund")
    assert refused.status_code == 422 and error(refused)["code"] == "ESCROW_FUNDING_FAILED", refused.content
    assert error(refused)["details"]["providerCode"] == "ESCROW_INSUFFICIENT_FUNDS"
    current = writer.get(f"/api/v1{path}").json()["data"]
    assert current["status"] == "ESCROW_FUNDING" and current["escrow"]["status"] == "CREATED"
    assert user_accounts(buyer)[1].balance == 10 * USD  # the hold is intact

    chain.mint(buyer.wallet.public_key, "25")
    funded = post(writer, f"{path}/escrow/fund")
    assert funded.status_code == 201 and funded.json()["data"]["status"] == "IN_PROGRESS"


def test_an_orders_hold_cannot_be_freed_or_taken_through_the_balance_endpoints(
    chain, funded_user, trustless_work, writer, auth_client, settings
):
    """Issue 9 item 3: voiding an order's hold with cancel-reservation let the buyer reserve
    the same money for a second order, and the first escrow's funding then landed on
    chain without a ledger entry (verify: BALANCE_DISCREPANCY)."""
    settings.OFFERHUB_SYNC_WAIT_SECONDS = 5  # on the unfixed code the funding never settles
    buyer, seller = funded_user("35.00"), funded_user("0")
    first = create(writer, buyer, seller, "30.00")
    assert post(writer, f"/orders/{first['id']}/reserve").status_code == 201
    balance = f"/users/{buyer.public_id}/balance"

    freed = post(writer, f"{balance}/cancel-reservation", {"amount": "30.00", "orderId": first["id"]})
    assert freed.status_code == 409 and error(freed)["code"] == "INVALID_STATE", freed.content
    assert error(freed)["details"]["orderId"] == first["id"]
    hold = Hold.objects.get(reference=first["id"])
    assert (hold.status, hold.remaining, hold.owner) == (Hold.Status.ACTIVE, 30 * USD, Hold.Owner.ORDER)
    second = create(writer, buyer, seller, "30.00")
    refused = post(writer, f"/orders/{second['id']}/reserve")
    assert refused.status_code == 422 and error(refused)["code"] == "INSUFFICIENT_FUNDS"

    # Nor can a raw hold be put on another order's id, or the order's hold be moved by support.
    squat = post(writer, f"{balance}/reserve", {"amount": "5.00", "orderId": second["id"]})
    assert squat.status_code == 409 and error(squat)["code"] == "INVALID_STATE", squat.content
    support = auth_client(scopes=["read", "write", "support"])
    for action, extra in (("deduct-reserved", {}), ("release", {"sellerId": seller.public_id})):
        taken = post(support, f"{balance}/{action}", {"amount": "30.00", "orderId": first["id"], **extra})
        assert taken.status_code == 409 and error(taken)["code"] == "INVALID_STATE", (action, taken.content)
    assert user_accounts(buyer)[0].balance == 5 * USD and user_accounts(buyer)[1].balance == 30 * USD

    for step in ("escrow", "escrow/fund"):
        response = post(writer, f"/orders/{first['id']}/{step}")
        assert response.status_code == 201, (step, response.content)
    assert response.json()["data"]["status"] == "IN_PROGRESS"
    verified = writer.get(f"/api/v1{balance}/verify")
    assert verified.status_code == 200, verified.content
    assert verified.json()["data"]["providerVerified"] is True
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(engagement_id=first["id"]), buyer, seller)


def test_a_slow_chain_answers_202_with_the_intermediate_state(
    chain, funded_user, trustless_work, writer, settings, monkeypatch
):
    from escrow.runner import escrow_drive
    from escrow.tasks import escrow_drive_task

    settings.OFFERHUB_SYNC_WAIT_SECONDS = 0.3
    buyer, seller = funded_user("30.00"), funded_user("0")
    order = create(writer, buyer, seller, "10.00")
    path = f"/orders/{order['id']}"
    assert post(writer, f"{path}/reserve").status_code == 201
    monkeypatch.setattr(escrow_drive_task, "delay", lambda pk: None)  # the worker is busy elsewhere
    pending = post(writer, f"{path}/escrow")
    assert pending.status_code == 202, pending.content
    assert pending.json()["data"]["status"] == "ESCROW_CREATING"
    assert pending.json()["data"]["escrow"]["status"] == "CREATING"
    resumed = post(writer, f"{path}/escrow")  # asking again resumes the same record
    assert (
        resumed.status_code == 202 and resumed.json()["data"]["escrow"]["id"] == pending.json()["data"]["escrow"]["id"]
    )
    escrow = Escrow.objects.get(engagement_id=order["id"])
    escrow_drive(escrow_pk=escrow.pk)  # the worker gets to it
    assert escrow.steps.filter(action=EscrowStep.Action.DEPLOY).count() == 1
    assert writer.get(f"/api/v1{path}").json()["data"]["status"] == "ESCROW_FUNDING"


def test_idempotent_replay_and_client_order_ref(writer):
    buyer, seller = UserFactory(), UserFactory()
    body = {"buyer_id": buyer.public_id, "seller_id": seller.public_id, "amount": "12.50", "title": "Copy"}
    first = post(writer, "/orders", body, key="same-key")
    replay = post(writer, "/orders", body, key="same-key")
    assert first.status_code == replay.status_code == 201
    assert replay.content == first.content and replay["Idempotency-Replay"] == "true"
    assert Order.objects.count() == 1
    reused = post(writer, "/orders", {**body, "amount": "13.00"}, key="same-key")
    assert reused.status_code == 409 and error(reused)["code"] == "IDEMPOTENCY_KEY_REUSED"

    with_ref = post(writer, "/orders", {**body, "client_order_ref": "cart-9"})
    assert with_ref.status_code == 201
    same = post(writer, "/orders", {**body, "client_order_ref": "cart-9", "title": "Other words"})
    assert same.status_code == 200 and same.json()["data"]["id"] == with_ref.json()["data"]["id"]
    conflict = post(writer, "/orders", {**body, "client_order_ref": "cart-9", "amount": "99.00"})
    assert conflict.status_code == 409 and error(conflict)["code"] == "ORDER_REF_CONFLICT"
    assert Order.objects.count() == 2


@pytest.mark.parametrize(
    ("change", "status", "code", "field"),
    [
        ({"buyer_id": None}, 400, "VALIDATION_ERROR", "buyer_id"),
        ({"amount": 10}, 400, "VALIDATION_ERROR", "amount"),
        ({"amount": "10.5"}, 400, "VALIDATION_ERROR", "amount"),
        ({"title": "x" * 101}, 400, "VALIDATION_ERROR", "title"),
        ({"colour": "red"}, 400, "VALIDATION_ERROR", "colour"),
        ({"metadata": [1]}, 400, "VALIDATION_ERROR", "metadata"),
        ({"milestones": []}, 400, "VALIDATION_ERROR", "milestones"),
        ({"milestones": [{"ref": "a", "title": "A"}]}, 400, "VALIDATION_ERROR", "milestones.0.amount"),
        ({"milestones": [{"ref": "a", "amount": "10.00"}]}, 400, "VALIDATION_ERROR", "milestones.0.title"),
        (
            {"milestones": [{"ref": "a", "title": "A", "amount": "10.00", "x": 1}]},
            400,
            "VALIDATION_ERROR",
            "milestones.0.x",
        ),
        ({"milestones": [{"ref": "a", "title": "A", "amount": "4.00"}]}, 400, "INVALID_AMOUNT", "milestones"),
        (
            {
                "milestones": [
                    {"ref": "a", "title": "A", "amount": "5.00"},
                    {"ref": "a", "title": "B", "amount": "5.00"},
                ]
            },
            400,
            "INVALID_REQUEST",
            "milestones",
        ),
        ({"amount": "0.50"}, 400, "INVALID_AMOUNT", "amount"),
        ({"amount": "50000.01"}, 400, "INVALID_AMOUNT", "amount"),
        ({"currency": "EUR"}, 400, "INVALID_CURRENCY", "currency"),
        ({"seller_id": "same"}, 400, "INVALID_REQUEST", "seller_id"),
        ({"seller_id": "usr_nobody"}, 404, "USER_NOT_FOUND", None),
    ],
)
def test_order_creation_errors_name_the_field(writer, change, status, code, field):
    buyer, seller = UserFactory(), UserFactory()
    body = {"buyer_id": buyer.public_id, "seller_id": seller.public_id, "amount": "10.00", "title": "Logo", **change}
    if body["seller_id"] == "same":
        body["seller_id"] = buyer.public_id
    body = {name: value for name, value in body.items() if value is not None}
    response = post(writer, "/orders", body)
    assert (response.status_code, error(response)["code"]) == (status, code), response.content
    details = error(response)["details"]
    if code == "VALIDATION_ERROR":
        assert field in {f["field"] for f in details["fields"]}
    elif field:
        assert details["field"] == field
    assert not Order.objects.exists()


def test_scopes_and_authentication(auth_client, api_client, writer):
    order, _ = order_create(buyer=UserFactory(), seller=UserFactory(), amount=10 * USD, title="Logo", actor=SYSTEM)
    reader = auth_client(scopes=["read"])
    assert reader.get(f"/api/v1/orders/{order.public_id}").status_code == 200
    for path in ("/orders", f"/orders/{order.public_id}/reserve", f"/orders/{order.public_id}/resolution/refund"):
        refused = post(reader, path)
        assert refused.status_code == 403 and error(refused)["code"] == "INSUFFICIENT_SCOPE", path
        assert api_client.post(f"/api/v1{path}", {}, format="json").status_code == 401
    assert api_client.get("/api/v1/orders").status_code == 401
    write_only = auth_client(scopes=["write"])
    assert write_only.get("/api/v1/orders").status_code == 403
    assert post(writer, "/orders/ord_nope/reserve").status_code == 404
    unknown = writer.get("/api/v1/orders/ord_nope")
    assert unknown.status_code == 404 and error(unknown)["code"] == "ORDER_NOT_FOUND"
    assert writer.get("/api/v1/orders", {"status": "PAID"}).status_code == 400
    assert writer.get("/api/v1/orders", {"created_after": "yesterday"}).status_code == 400


def test_marketplaces_see_only_their_orders(auth_client):
    shop_a, shop_b = auth_client(marketplace_id="mkt_a"), auth_client(marketplace_id="mkt_b")
    buyer, seller = UserFactory(marketplace_id="mkt_a"), UserFactory(marketplace_id="mkt_a")
    order = create(shop_a, buyer, seller, "10.00")
    assert Order.objects.get(public_id=order["id"]).marketplace_id == "mkt_a"
    assert shop_a.get(f"/api/v1/orders/{order['id']}").status_code == 200
    for response in (shop_b.get(f"/api/v1/orders/{order['id']}"), post(shop_b, f"/orders/{order['id']}/cancel")):
        assert response.status_code == 404 and error(response)["code"] == "ORDER_NOT_FOUND"
    assert shop_b.get("/api/v1/orders").json()["data"] == []
    body = {"buyer_id": buyer.public_id, "seller_id": seller.public_id, "amount": "10.00", "title": "Logo"}
    foreign = post(shop_b, "/orders", body)
    assert foreign.status_code == 404 and error(foreign)["code"] == "USER_NOT_FOUND"


def test_the_list_filters_pages_and_costs_the_same_for_3_or_20_orders(writer, django_assert_max_num_queries):
    buyer, seller, other = UserFactory(), UserFactory(), UserFactory()

    def make(count: int, **who):
        for n in range(count):
            order, _ = order_create(
                amount=10 * USD,
                title=f"Order {n}",
                actor=SYSTEM,
                milestones=[
                    {"ref": "a", "title": "A", "amount": 4 * USD},
                    {"ref": "b", "title": "B", "amount": 6 * USD},
                ],
                **who,
            )
            Escrow.objects.create(
                engagement_id=order.public_id,
                type=Escrow.Type.MULTI,
                title=order.title,
                buyer=order.buyer,
                seller=order.seller,
                hold_reference=order.public_id,
                amount=order.amount,
            )

    def queries(limit: int) -> int:
        with CaptureQueriesContext(connection) as captured:
            response = writer.get("/api/v1/orders", {"limit": limit})
        assert response.status_code == 200 and len(response.json()["data"]) == limit
        assert all(o["escrow"] and len(o["milestones"]) == 2 for o in response.json()["data"])
        return len(captured)

    make(3, buyer=buyer, seller=seller)
    few = queries(3)
    make(17, buyer=other, seller=buyer)
    with django_assert_max_num_queries(few):
        queries(20)

    page = writer.get("/api/v1/orders", {"limit": 15}).json()
    assert page["hasMore"] is True and page["nextCursor"] == page["pagination"]["nextCursor"]
    rest = writer.get("/api/v1/orders", {"limit": 15, "cursor": page["nextCursor"]}).json()
    assert len(rest["data"]) == 5 and rest["hasMore"] is False
    assert not {o["id"] for o in page["data"]} & {o["id"] for o in rest["data"]}
    by_buyer = writer.get("/api/v1/orders", {"buyer_id": buyer.public_id, "limit": 100}).json()["data"]
    assert len(by_buyer) == 3
    either = writer.get("/api/v1/orders", {"buyer_id": buyer.public_id, "seller_id": buyer.public_id, "limit": 100})
    assert len(either.json()["data"]) == 20
    assert len(writer.get("/api/v1/orders", {"status": "order_created", "limit": 100}).json()["data"]) == 20
    assert writer.get("/api/v1/orders", {"created_before": "2000-01-01"}).json()["data"] == []
    assert (
        len(writer.get("/api/v1/orders", {"created_after": "2000-01-01T00:00:00Z", "limit": 100}).json()["data"]) == 20
    )
