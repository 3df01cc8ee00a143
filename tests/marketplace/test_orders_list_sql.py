"""GET /api/v1/orders reads its page with one SQL statement (marketplace.orders_selectors.
orders_page_as_api) and cleans its filters with OrderFilter's fields (offerhub.filters.
filter_values): the same orders, in the same order and shape, and the same 400s as the ORM
path (django-filter's FilterSet, offerhub.api.pagination.paginate, order_as_api) it replaced."""

from datetime import timedelta

import pytest
from django.test import RequestFactory
from django.utils import timezone
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

from disputes.models import Dispute
from escrow.models import Escrow
from marketplace.filters import OrderFilter
from marketplace.models import Order
from marketplace.orders import SYSTEM, order_create
from marketplace.orders_api import OrderListCreateView
from marketplace.orders_selectors import order_as_api, orders_visible, orders_with_escrows
from offerhub.api.authentication import Principal
from offerhub.api.pagination import paginate
from offerhub.filters import filter_values, rows_filtered
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

USD = 10_000_000


def orm_page(principal, params: dict) -> dict:
    """The list as the ORM path answered it (filters, keyset page, order_as_api)."""
    request = Request(RequestFactory().get("/api/v1/orders", params))
    rows = rows_filtered(view=OrderListCreateView(), request=request, rows=orders_visible(principal=principal))
    page = paginate(rows, params=request.query_params, id_field="public_id")
    items = [order_as_api(o) for o in orders_with_escrows(page.items)]
    return {"data": items, "hasMore": page.has_more, "nextCursor": page.next_cursor}


def listed(client, params: dict) -> dict:
    response = client.get("/api/v1/orders", params)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["pagination"] == {"hasMore": body["hasMore"], "nextCursor": body["nextCursor"]}
    return {name: body[name] for name in ("data", "hasMore", "nextCursor")}


@pytest.fixture
def orders():
    """Seven orders of two buyers, one with milestones, an escrow and a dispute, three created at
    the same instant (the keyset's tie on created_at), with metadata and references."""
    buyer, other, seller = UserFactory(), UserFactory(), UserFactory()
    made = []
    for n in range(6):
        order, _ = order_create(
            buyer=buyer if n % 2 else other,
            seller=seller,
            amount=(n + 1) * USD,
            title=f"Order {n}",
            description="" if n % 3 else f"About {n}",
            client_order_ref=f"ref-{n}" if n % 2 else "",
            metadata={"n": n, "tags": ["a", "b"]} if n % 2 else None,
            actor=SYSTEM,
            milestones=[{"ref": "m1", "title": "First", "amount": (n + 1) * USD}] if n == 3 else (),
        )
        made.append(order)
    staged = made[3]
    Escrow.objects.create(
        engagement_id=staged.public_id,
        type=Escrow.Type.MULTI,
        title=staged.title,
        buyer=staged.buyer,
        seller=staged.seller,
        hold_reference=staged.public_id,
        amount=staged.amount,
    )
    Dispute.objects.create(order=made[1], opened_by="BUYER", reason="NOT_DELIVERED")
    same = timezone.now() - timedelta(days=1)
    Order.objects.filter(pk__in=[made[0].pk, made[2].pk, made[4].pk]).update(created_at=same)
    return {"buyer": buyer, "other": other, "seller": seller, "orders": made, "same": same}


def test_every_filter_and_page_answers_as_the_orm_path(auth_client, orders):
    client = auth_client(scopes=["read"])
    principal = principal_of(client)
    buyer, other, seller = orders["buyer"], orders["other"], orders["seller"]
    queries = [
        {},
        {"buyer_id": buyer.public_id},
        {"seller_id": seller.public_id},
        {"buyer_id": buyer.public_id, "seller_id": other.public_id},  # either party
        {"status": "order_created"},
        {"status": "CLOSED"},
        {"created_after": (orders["same"] - timedelta(seconds=1)).isoformat()},
        {"created_before": orders["same"].isoformat()},  # inclusive
        {"buyer_id": "usr_nobody"},
    ]
    for query in queries:
        for limit in ("1", "2", "20"):
            params, pages = {**query, "limit": limit}, 0
            while True:
                assert listed(client, params) == orm_page(principal, params), params
                page = orm_page(principal, params)
                pages += 1
                if not page["hasMore"]:
                    break
                params = {**params, "cursor": page["nextCursor"]}
            assert pages <= 8
    unknown = {"cursor": "ord_unknown"}
    assert listed(client, unknown) == orm_page(principal, unknown) == {"data": [], "hasMore": False, "nextCursor": None}


def principal_of(client) -> Principal:
    key = client.api_key
    return Principal(key.id, key.name, frozenset(key.scopes), key.marketplace_id)


def test_a_marketplace_key_lists_only_its_marketplaces_orders(auth_client):
    seller = UserFactory()
    mine, _ = order_create(buyer=UserFactory(), seller=seller, amount=USD, title="Mine", actor=SYSTEM)
    theirs, _ = order_create(buyer=UserFactory(), seller=seller, amount=USD, title="Theirs", actor=SYSTEM)
    Order.objects.filter(pk=mine.pk).update(marketplace_id="mkt_a")
    Order.objects.filter(pk=theirs.pk).update(marketplace_id="mkt_b")
    shop = auth_client(scopes=["read"], marketplace_id="mkt_a")
    assert [o["id"] for o in listed(shop, {"seller_id": seller.public_id})["data"]] == [mine.public_id]
    assert listed(shop, {"seller_id": seller.public_id}) == orm_page(
        principal_of(shop), {"seller_id": seller.public_id}
    )


def test_a_page_with_a_cursor_is_one_statement(auth_client, orders, django_assert_max_num_queries):
    client = auth_client(scopes=["read"])
    # newest first: orders 5, 3 (milestones, escrow) and 1 (dispute), then the plain 0, 2 and 4
    first = listed(client, {"seller_id": orders["seller"].public_id, "limit": "3"})
    plain = {"seller_id": orders["seller"].public_id, "limit": "1", "cursor": first["nextCursor"]}
    listed(client, plain)  # the key's row, read once
    with django_assert_max_num_queries(1):
        page = listed(client, plain)
    assert page["data"][0]["escrow"] is None and page["data"][0]["milestones"] == []
    # A page holding an order with milestones, an escrow and a dispute reads each kind once.
    with django_assert_max_num_queries(4):
        listed(client, {"seller_id": orders["seller"].public_id, "limit": "100"})


@pytest.mark.parametrize(
    "query",
    [
        {"status": "PAID"},
        {"status": "a\x00b", "buyer_id": "usr_a'b"},
        {"buyer_id": "b" * 65, "seller_id": "usr_ok", "created_after": "yesterday"},
        {"created_before": "2026-02-30"},
        {"created_after": "2026-01-01T25:00:00Z"},
        {"created_after": "0001-01-01T00:00:00+01:00"},
    ],
)
def test_bad_filters_are_refused_as_the_filterset_refused_them(query):
    request = Request(RequestFactory().get("/api/v1/orders", query))
    with pytest.raises(ValidationError) as by_filterset:
        rows_filtered(view=OrderListCreateView(), request=request, rows=Order.objects.all())
    with pytest.raises(ValidationError) as by_fields:
        filter_values(filterset_class=OrderFilter, params=request.query_params)
    assert by_fields.value.detail == by_filterset.value.detail
    assert [list(map(str, v)) for v in by_fields.value.detail.values()]  # messages, not objects


def test_good_filters_are_cleaned_as_the_filterset_cleaned_them():
    query = {
        "status": "order_created",
        "buyer_id": "usr_a",
        "created_after": "2026-01-01",
        "created_before": "2026-01-12T10:00:00.000+15:59",
        "seller_id": "",
        "unknown": "x",
    }
    request = Request(RequestFactory().get("/api/v1/orders", query))
    filterset = OrderFilter(request.query_params, queryset=Order.objects.all(), request=request)
    assert filterset.is_valid()
    expected = {name: value for name, value in filterset.form.cleaned_data.items() if value not in ("", None)}
    assert filter_values(filterset_class=OrderFilter, params=request.query_params) == expected
    assert expected["status"] == "ORDER_CREATED" and "seller_id" not in expected


def test_times_are_written_as_the_api_writes_them(auth_client):
    """PostgreSQL formats the list's times: UTC, milliseconds truncated, as iso_timestamp does."""
    from datetime import UTC, datetime

    from offerhub.timefmt import iso_timestamp

    order, _ = order_create(buyer=UserFactory(), seller=UserFactory(), amount=USD, title="Late", actor=SYSTEM)
    moment = datetime(2026, 1, 1, 23, 59, 59, 999_999, tzinfo=UTC)
    Order.objects.filter(pk=order.pk).update(created_at=moment, updated_at=moment.replace(microsecond=1_000))
    listed_order = listed(auth_client(scopes=["read"]), {"buyer_id": order.buyer.public_id})["data"][0]
    assert listed_order["createdAt"] == iso_timestamp(moment) == "2026-01-01T23:59:59.999Z"
    assert listed_order["updatedAt"] == "2026-01-01T23:59:59.001Z"


def test_the_page_and_the_balance_are_prepared_statements(auth_client):
    """Parsed and planned once per connection (offerhub.postgresql.prepared_cursor), then run by name."""
    from django.db import connection

    if not hasattr(connection, "prepared_cursor"):
        pytest.skip("Django's own backend: no prepared statements (PgBouncer deployments)")
    buyer = UserFactory()
    order_create(buyer=buyer, seller=UserFactory(), amount=USD, title="Prepared", actor=SYSTEM)
    client = auth_client(scopes=["read"])
    for _ in range(3):
        assert len(listed(client, {"buyer_id": buyer.public_id})["data"]) == 1
        assert client.get(f"/api/v1/users/{buyer.public_id}/balance").status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE NOT from_sql")
        prepared = [row[0] for row in cursor.fetchall()]
    assert sum("FROM marketplace_order o" in sql for sql in prepared) == 1
    assert sum("FROM payments_ledgeraccount a" in sql for sql in prepared) == 1
