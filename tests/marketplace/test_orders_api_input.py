"""Bad input on the orders, resolution, dispute-opening and escrow endpoints (API.md §8-§10):
always a 400 (413/415 for the transport) naming the field, never a 5xx, and nothing applied.

NUL characters, unbounded or non-string text, unknown fields, money that is not a two-decimal
ASCII string, over-long ids and garbage query values each used to reach the database (500) or
be stored as sent; the serializers of `marketplace.api_serializers` refuse them up front.
"""

import itertools

import pytest

from disputes.models import Dispute
from escrow.models import EscrowStep
from marketplace.api_serializers import DisputeWithOrderOutput, MilestoneOutput, OrderOutput
from marketplace.models import Order
from marketplace.orders import SYSTEM, order_create
from offerhub.models import Event
from payments.models import Hold
from tests.escrow.test_lifecycle import USD
from tests.factories import UserFactory
from tests.marketplace.test_dispute_api import funded_order

pytestmark = pytest.mark.django_db
keys = (f"input-{n}" for n in itertools.count())
LONG = "x" * 100_000
NUL = "a\x00b"
FULLWIDTH = "\uff11\uff10.\uff10\uff10"  # "10.00" in fullwidth digits


def post(client, path: str, body, **extra):
    return client.post(f"/api/v1{path}", body, format="json", HTTP_IDEMPOTENCY_KEY=next(keys), **extra)


def refused_fields(response) -> set[str]:
    """The fields a 400 names (the error envelope's details.fields, or details.field)."""
    assert response.status_code == 400, response.content
    details = response.json()["error"]["details"]
    return {f["field"] for f in details.get("fields", [])} | ({details["field"]} if "field" in details else set())


@pytest.fixture
def writer(auth_client):
    return auth_client(scopes=["read", "write"])


@pytest.fixture
def order(db) -> Order:
    order, _ = order_create(buyer=UserFactory(), seller=UserFactory(), amount=10 * USD, title="Logo", actor=SYSTEM)
    return order


def creation(**change) -> dict:
    buyer, seller = UserFactory(), UserFactory()
    body = {"buyer_id": buyer.public_id, "seller_id": seller.public_id, "amount": "10.00", "title": "Logo"}
    return {**body, **change}


MILESTONE = {"milestone_ref": "m1", "title": "Draft", "amount": "10.00"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"title": NUL}, "title"),
        ({"title": 5}, "title"),
        ({"description": NUL}, "description"),
        ({"description": LONG}, "description"),
        ({"description": {"text": "Logo"}}, "description"),
        ({"description": 12}, "description"),
        ({"client_order_ref": NUL}, "client_order_ref"),
        ({"client_order_ref": "r" * 256}, "client_order_ref"),
        ({"buyer_id": NUL}, "buyer_id"),
        ({"buyer_id": "usr_" + "x" * 10_000}, "buyer_id"),
        ({"buyer_id": 12345}, "buyer_id"),
        ({"seller_id": ["usr_a"]}, "seller_id"),
        ({"amount": "1e3"}, "amount"),
        ({"amount": FULLWIDTH}, "amount"),
        ({"amount": "10.00\n"}, "amount"),
        ({"amount": "922337203685.47"}, "amount"),
        ({"amount": 10.0}, "amount"),
        ({"currency": NUL}, "currency"),
        ({"metadata": {"note": NUL}}, "metadata"),
        ({"metadata": {NUL: "x"}}, "metadata"),
        ({"metadata": {"deep": {"deeper": 1}}}, "metadata"),
        ({"milestones": [{**MILESTONE, "milestone_ref": NUL}]}, "milestones.0.milestone_ref"),
        ({"milestones": [{**MILESTONE, "milestone_ref": "a\nb"}]}, "milestones.0.milestone_ref"),
        ({"milestones": [{**MILESTONE, "title": NUL}]}, "milestones.0.title"),
        ({"milestones": [{**MILESTONE, "title": 7}]}, "milestones.0.title"),
        ({"milestones": [{**MILESTONE, "amount": "1e1"}]}, "milestones.0.amount"),
        ({"milestones": [{**MILESTONE, "ref": "m2"}]}, "milestones.0.milestone_ref"),
        ({"milestones": [{**MILESTONE, "description": "Other"}]}, "milestones.0.title"),
        ({"milestones": ["m1"]}, "milestones.0"),
        ({"milestones": {"m1": MILESTONE}}, "milestones"),
        ({"milestones": [MILESTONE] * 51}, "milestones"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_order_creation_refuses_bad_input_naming_the_field(writer, change, field):
    response = post(writer, "/orders", creation(**change))
    assert field in refused_fields(response)
    assert not Order.objects.exists() and not Event.objects.filter(type="order.created").exists()


def test_order_creation_takes_both_milestone_shapes_and_null_optionals(writer):
    sdk = [
        {"ref": "a", "description": "Draft", "amount": "4.00"},
        {"ref": "b", "description": "Final", "amount": "6.00"},
    ]
    body = creation(milestones=sdk, description=None, client_order_ref=None, metadata=None)
    response = post(writer, "/orders", body)
    assert response.status_code == 201, response.content
    data = response.json()["data"]
    assert [(m["milestoneRef"], m["title"]) for m in data["milestones"]] == [("a", "Draft"), ("b", "Final")]
    both = [{"milestone_ref": "a", "ref": "a", "title": "Draft", "description": "Draft", "amount": "10.00"}]
    assert post(writer, "/orders", creation(milestones=both)).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        b"buyer_id=usr_a&amount=10.00",
        b"<order/>",
    ],
)
def test_a_body_that_is_not_json_is_415(writer, body):
    response = writer.generic(
        "POST",
        "/api/v1/orders",
        body,
        content_type="application/x-www-form-urlencoded" if b"=" in body else "application/xml",
        HTTP_IDEMPOTENCY_KEY=next(keys),
    )
    assert response.status_code == 415 and response.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert not Order.objects.exists()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "a\x00b"}, "status"),
        ({"status": "PAID"}, "status"),
        ({"buyer_id": "usr_a'; drop table orders"}, "buyer_id"),
        ({"seller_id": "s" * 500}, "seller_id"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_before": "2026-02-30"}, "created_before"),
        ({"created_after": "2026-01-01T25:00:00Z"}, "created_after"),
        ({"cursor": "ord_a'b"}, "cursor"),
        ({"cursor": "\x00"}, "cursor"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1e3"}, "limit"),
    ],
)
def test_the_order_list_refuses_bad_filters_naming_them(writer, order, query, field):
    assert field in refused_fields(writer.get("/api/v1/orders", query))


def test_the_order_list_takes_far_dates_and_unknown_parameters(writer, order):
    for query in (
        {"created_after": "0001-01-01T01:00:00+01:00"},
        {"created_before": "9999-12-31T23:59:59Z"},
        {"created_before": "2026-01-12T10:00:00.000+15:59"},
        {"status": "order_created", "cache": "123"},
    ):
        response = writer.get("/api/v1/orders", query)
        assert response.status_code == 200, (query, response.content)
    for name, value in (
        ("created_before", "9999-12-31T23:59:59-23:59"),
        ("created_after", "0001-01-01T00:00:00+01:00"),
    ):
        assert name in refused_fields(writer.get("/api/v1/orders", {name: value}))


@pytest.mark.parametrize(
    ("action", "body", "field"),
    [
        ("reserve", {"amount": "1e3"}, "amount"),
        ("reserve", {"amount": FULLWIDTH}, "amount"),
        ("reserve", {"amount": "10.00\n"}, "amount"),
        ("reserve", {"amount": "922337203685.47"}, "amount"),
        ("reserve", {"amount": 10}, "amount"),
        ("reserve", {"amount": "10.00", "orderId": "x"}, "orderId"),
        ("reserve", ["amount"], "body"),
        ("cancel", {"reason": NUL}, "reason"),
        ("cancel", {"reason": "r" * 256}, "reason"),
        ("cancel", {"reason": LONG}, "reason"),
        ("cancel", {"reason": 5}, "reason"),
        ("escrow", {"network": "testnet"}, "network"),
        ("escrow/fund", {"amount": "10.00"}, "amount"),
        ("resolution/release", {"reason": LONG}, "reason"),
        ("resolution/release", {"requestedBy": NUL}, "requestedBy"),
        ("resolution/release", {"requestedBy": "u" * 256}, "requestedBy"),
        ("resolution/release", {"reason": ["late"]}, "reason"),
        ("resolution/refund", {"reason": NUL}, "reason"),
        ("resolution/refund", {"reason": LONG}, "reason"),
        ("resolution/refund", {"reason": ""}, "reason"),
        ("resolution/refund", {}, "reason"),
        ("milestones/m1/complete", {"evidence": "done"}, "evidence"),
        ("milestones/m1/release", {"x": 1}, "x"),
        ("resolution/dispute", {}, "openedBy"),
        ("resolution/dispute", {"openedBy": 1, "reason": "OTHER"}, "openedBy"),
        ("resolution/dispute", {"openedBy": "BUYER", "reason": NUL}, "reason"),
        ("resolution/dispute", {"openedBy": "BUYER", "reason": "OTHER", "evidence": [NUL]}, "evidence.0"),
        ("resolution/dispute", {"openedBy": "BUYER", "reason": "OTHER", "evidence": [LONG]}, "evidence.0"),
        ("resolution/dispute", {"openedBy": "BUYER", "reason": "OTHER", "evidence": "a link"}, "evidence"),
        ("resolution/dispute", {"openedBy": "BUYER", "reason": "OTHER", "evidence": ["e"] * 21}, "evidence"),
        ("resolution/dispute", {"openedBy": "BUYER", "reason": "OTHER", "orderId": NUL}, "orderId"),
        ("resolution/dispute", {"openedBy": "BUYER", "reason": "OTHER", "note": "x"}, "note"),
    ],
)
def test_order_actions_refuse_bad_input_before_anything_happens(writer, order, action, body, field):
    response = post(writer, f"/orders/{order.public_id}/{action}", body)
    assert field in refused_fields(response)
    assert Order.objects.get(pk=order.pk).status == Order.Status.ORDER_CREATED
    assert not Hold.objects.exists() and not Dispute.objects.exists()
    assert Event.objects.filter(aggregate_id=order.public_id).count() == 1  # order.created only


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/orders/ord_" + "x" * 200, 404),
        ("/orders/ord_" + "x" * 300, 400),
        ("/orders/ord_a%00b", 400),
        ("/orders/ord_a%00b/milestones", 400),
        ("/escrows/C" + "A" * 300, 400),
        ("/escrows/C" + "A" * 100, 404),
        ("/escrows/CA%00B", 400),
    ],
)
def test_over_long_or_nul_ids_in_the_path_are_400_or_404(writer, path, status):
    response = writer.get(f"/api/v1{path}")
    assert response.status_code == status, response.content


@pytest.mark.parametrize(
    "action", ["reserve", "cancel", "escrow", "escrow/fund", "resolution/release", "resolution/dispute"]
)
def test_actions_on_over_long_or_nul_order_ids_are_400_or_404(writer, action):
    for order_id, status in (("ord_" + "x" * 200, 404), ("ord_" + "x" * 300, 400), ("ord_a%00b", 400)):
        body = {"openedBy": "BUYER", "reason": "OTHER"} if action.endswith("dispute") else {}
        response = post(writer, f"/orders/{order_id}/{action}", body)
        assert response.status_code == status, (order_id, response.content)


def test_over_long_or_nul_milestone_refs_are_never_5xx(writer, order):
    for ref, status in (("m" * 200, 409), ("m" * 300, 400), ("m%00", 400)):
        for action in ("complete", "release"):
            response = post(writer, f"/orders/{order.public_id}/milestones/{ref}/{action}", {})
            assert response.status_code == status, (ref, action, response.content)
    assert Order.objects.get(pk=order.pk).status == Order.Status.ORDER_CREATED


@pytest.mark.django_db(transaction=True)
def test_bad_text_on_an_order_in_progress_reaches_nothing(chain, funded_user, trustless_work, writer):
    order = funded_order(funded_user("20.00"), funded_user("0"))
    steps = EscrowStep.objects.count()
    for action, body, field in (
        ("resolution/dispute", {"openedBy": "BUYER", "reason": "OTHER", "evidence": [NUL]}, "evidence.0"),
        ("resolution/refund", {"reason": NUL}, "reason"),
        ("resolution/release", {"requestedBy": NUL}, "requestedBy"),
    ):
        assert field in refused_fields(post(writer, f"/orders/{order.public_id}/{action}", body)), action
    assert Order.objects.get(pk=order.pk).status == Order.Status.IN_PROGRESS
    assert not Dispute.objects.exists() and EscrowStep.objects.count() == steps


def shape(data, serializer) -> None:
    """`data` has exactly the fields the output serializer (so the OpenAPI schema) describes."""
    fields = serializer.fields
    assert set(data) == set(fields), set(data) ^ set(fields)
    for name, field in fields.items():
        child = getattr(field, "child", None)
        if data[name] is None:
            assert field.allow_null, name
        elif hasattr(field, "fields"):
            shape(data[name], field)
        elif child is not None and hasattr(child, "fields"):
            for item in data[name]:
                shape(item, child)


@pytest.mark.django_db(transaction=True)
def test_responses_have_the_shapes_the_schema_describes(chain, funded_user, trustless_work, writer):
    order = funded_order(funded_user("20.00"), funded_user("0"))
    data = writer.get(f"/api/v1/orders/{order.public_id}").json()["data"]
    shape(data, OrderOutput())
    assert data["escrow"] is not None
    listed = writer.get("/api/v1/orders").json()["data"]
    shape(listed[0], OrderOutput())
    milestones = [{"ref": "a", "description": "Draft", "amount": "10.00"}]
    created = post(writer, "/orders", creation(milestones=milestones)).json()["data"]
    shape(created, OrderOutput())
    shape(created["milestones"][0], MilestoneOutput())
    body = {"openedBy": "BUYER", "reason": "OTHER", "evidence": ["https://example.com/a.png"]}
    dispute = post(writer, f"/orders/{order.public_id}/resolution/dispute", body)
    assert dispute.status_code == 201, dispute.content
    shape(dispute.json()["data"], DisputeWithOrderOutput())
