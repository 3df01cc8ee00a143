"""Order reads for the API (API.md §8): what a key may see, and the wire shapes.

`orders_visible` scopes orders by the key's marketplace (§1.10); `orders_with_escrows`
loads a page's milestones and escrows in one query each (an escrow points at its order by
`engagement_id`, not by a foreign key), so a list costs the same number of queries for 3 orders
or 100. The list's own query says which orders have any (EXISTS, on indexed columns), and
only those are looked up: a page of orders without milestones, escrow or dispute is one query.
"""

import datetime as dt

from django.core.exceptions import ObjectDoesNotExist
from django.db import connection
from django.db.models import BooleanField, F, Prefetch, QuerySet, prefetch_related_objects
from django.db.models.expressions import RawSQL

from escrow.models import Escrow
from marketplace.models import Order, OrderMilestone
from offerhub.database import prepared_cursor
from offerhub.errors import ServiceError
from offerhub.money import money_from_stroops
from offerhub.timefmt import iso_timestamp

NO_ESCROW = object()  # not loaded yet (None means: loaded, the order has none)


def _exists_for_order(model, column: str, order_column: str) -> RawSQL:
    """EXISTS (a row of `model` whose `column` is the order's `order_column`), in SQL: three
    Exists(Subquery) annotations cost the list a third of a millisecond to compile. Only for
    top-level queries on orders (it names the order table)."""
    table, orders = model._meta.db_table, Order._meta.db_table
    sql = f"EXISTS (SELECT 1 FROM {table} WHERE {table}.{column} = {orders}.{order_column})"  # noqa: S608
    return RawSQL(sql, (), output_field=BooleanField())  # noqa: S611 - no input: the models' own names


def orders_visible(*, principal) -> QuerySet[Order]:
    """Orders an API key may see: all of them, or those created through its marketplace's keys.

    The parties' public ids come as columns of the order's row (the wire shape needs nothing
    else of them), not as two User objects per order; whether it has milestones, an escrow or a
    dispute too, so that `orders_with_escrows` reads those only for the orders that have them."""
    dispute_model = Order._meta.get_field("dispute_record").related_model
    orders = Order.objects.annotate(
        api_buyer_id=F("buyer__public_id"),
        api_seller_id=F("seller__public_id"),
        api_has_milestones=_exists_for_order(OrderMilestone, "order_id", "id"),
        api_has_escrow=_exists_for_order(Escrow, "engagement_id", "public_id"),
        api_has_dispute=_exists_for_order(dispute_model, "order_id", "id"),
    )
    if principal.marketplace_id:
        orders = orders.filter(marketplace_id=principal.marketplace_id)
    return orders


def orders_with_escrows(orders: list[Order]) -> list[Order]:
    """Attach each order's escrow (or None), milestones and dispute, in one query each at most."""
    with_milestones = [
        o
        for o in orders
        if getattr(o, "api_has_milestones", True) and "milestones" not in getattr(o, "_prefetched_objects_cache", {})
    ]
    if with_milestones:
        prefetch_related_objects(
            with_milestones, Prefetch("milestones", queryset=OrderMilestone.objects.order_by("position"))
        )
    dispute_of = Order.dispute_record.related  # the reverse one-to-one's cache
    with_dispute = []
    for order in orders:
        has_dispute = getattr(order, "api_has_dispute", None)
        if has_dispute is False:
            dispute_of.set_cached_value(order, None)  # `order.dispute_record` raises DoesNotExist, no query
        elif has_dispute and not dispute_of.is_cached(order):
            with_dispute.append(order)
    if with_dispute:
        prefetch_related_objects(with_dispute, "dispute_record")
    wanted = [o.public_id for o in orders if getattr(o, "api_has_escrow", True)]
    escrows = {e.engagement_id: e for e in Escrow.objects.filter(engagement_id__in=wanted)} if wanted else {}
    for order in orders:
        order._api_escrow = escrows.get(order.public_id)
    return orders


def order_get(*, principal, public_id: str) -> Order:
    """One order the key may see, ready for `order_as_api`; 404 ORDER_NOT_FOUND otherwise."""
    order = orders_visible(principal=principal).filter(public_id=public_id).first()
    if order is None:
        raise ServiceError(
            "ORDER_NOT_FOUND", f"Order {public_id[:100]} not found", details={"orderId": public_id[:100]}
        )
    return orders_with_escrows([order])[0]


def escrow_as_api(escrow: Escrow) -> dict:
    return {
        "id": escrow.public_id,
        "orderId": escrow.engagement_id,
        "type": escrow.type,
        "trustlessContractId": escrow.contract_id or None,
        "status": escrow.status,
        "amount": money_from_stroops(escrow.amount),
        "terms": None,
        "fundedAt": iso_timestamp(escrow.funded_at),
        "releasedAt": iso_timestamp(escrow.released_at),
        "refundedAt": iso_timestamp(escrow.refunded_at),
        "createdAt": iso_timestamp(escrow.created_at),
        "updatedAt": iso_timestamp(escrow.updated_at),
    }


def milestone_as_api(milestone: OrderMilestone, *, order_id: str) -> dict:
    return {
        "id": f"{order_id}:{milestone.ref}",  # opaque: milestones are addressed by their ref
        "orderId": order_id,
        "milestoneRef": milestone.ref,
        "ref": milestone.ref,
        "title": milestone.title,
        "description": milestone.title,
        "amount": money_from_stroops(milestone.amount),
        "status": milestone.status,
        "completedAt": iso_timestamp(milestone.completed_at),
        "releasedAt": iso_timestamp(milestone.released_at),
        "createdAt": iso_timestamp(milestone.created_at),
        "updatedAt": iso_timestamp(milestone.updated_at),
    }


def dispute_as_api(dispute, *, order: dict | None = None) -> dict:
    """The Dispute object of API.md §10 (`order` nested only where the contract says so)."""
    data = {
        "id": dispute.public_id,
        "orderId": dispute.order.public_id,
        "openedBy": dispute.opened_by,
        "reason": dispute.reason,
        "evidence": dispute.evidence,
        "status": dispute.status,
        "resolutionDecision": dispute.resolution_decision or None,
        "decisionNote": dispute.decision_note or None,
        "assignedTo": dispute.assigned_to or None,
        "releaseAmount": money_from_stroops(dispute.release_amount) if dispute.release_amount is not None else None,
        "refundAmount": money_from_stroops(dispute.refund_amount) if dispute.refund_amount is not None else None,
        "resolvedAt": _timestamp_or_none(dispute.resolved_at),
        "respondBy": _timestamp_or_none(dispute.respond_by),
        "respondedAt": _timestamp_or_none(dispute.responded_at),
        "overdue": dispute.is_overdue(),
        "withdrawnAt": _timestamp_or_none(dispute.withdrawn_at),
        "createdAt": iso_timestamp(dispute.created_at),
        "updatedAt": iso_timestamp(dispute.updated_at),
    }
    if order is not None:
        data["order"] = order
    return data


def _timestamp_or_none(moment) -> str | None:
    return iso_timestamp(moment) if moment else None


def _dispute_of(order: Order) -> dict | None:
    try:
        dispute = order.dispute_record  # the disputes app's one dispute per order
    except ObjectDoesNotExist:
        return None
    return dispute_as_api(dispute)


def order_as_api(order: Order) -> dict:
    """The Order object of API.md §8. Reads the prefetched milestones and the attached escrow."""
    escrow = getattr(order, "_api_escrow", NO_ESCROW)
    if escrow is NO_ESCROW:
        escrow = Escrow.objects.filter(engagement_id=order.public_id).first()
    data = _order_fields_as_api(
        public_id=order.public_id,
        client_order_ref=order.client_order_ref,
        buyer_id=getattr(order, "api_buyer_id", None) or order.buyer.public_id,
        seller_id=getattr(order, "api_seller_id", None) or order.seller.public_id,
        amount=order.amount,
        currency=order.currency,
        status=order.status,
        title=order.title,
        description=order.description,
        metadata=order.metadata,
        created_at=iso_timestamp(order.created_at),
        updated_at=iso_timestamp(order.updated_at),
    )
    data["escrow"] = escrow_as_api(escrow) if escrow is not None else None
    if getattr(order, "api_has_milestones", True):  # the list's query saw none: nothing to read
        data["milestones"] = [milestone_as_api(m, order_id=order.public_id) for m in order.milestones.all()]
    data["dispute"] = _dispute_of(order)
    return data


def _order_fields_as_api(
    *,
    public_id,
    client_order_ref,
    buyer_id,
    seller_id,
    amount,
    currency,
    status,
    title,
    description,
    metadata,
    created_at: str,
    updated_at: str,
) -> dict:
    """The Order object of an order without escrow, milestones or dispute (order_as_api adds
    them); the times already as API timestamps."""
    return {
        "id": public_id,
        "clientOrderRef": client_order_ref or None,
        "buyerId": buyer_id,
        "sellerId": seller_id,
        "amount": money_from_stroops(amount),
        "currency": currency,
        "status": status,
        "title": title,
        "description": description or None,
        "metadata": metadata,
        "escrow": None,
        "milestones": [],
        "dispute": None,
        "createdAt": created_at,
        "updatedAt": updated_at,
    }


# --- A page of the orders list in one statement ---------------------------------------------------
#
# GET /orders answers the most frequent API read. Through the ORM a page cost ~3 ms of CPU:
# compiling the query, building 21 Order models (FSM bookkeeping included) and a FilterSet per
# request. The page is read here with one fixed SQL statement per combination of filters (the
# visibility, party, status, date and cursor conditions are AND-ed, their values parameters),
# as plain rows. Orders that have milestones, an escrow or a dispute (the EXISTS columns say
# which) become models built from the same row, completed by orders_with_escrows and shaped by
# order_as_api; a page of plain orders is one statement, a cursor included.


# offerhub.timefmt.iso_timestamp in SQL (milliseconds, truncated, UTC): PostgreSQL writes the
# text, instead of psycopg parsing a datetime that Python formats again.
_API_TIMESTAMP = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""


def _orders_page_sql(conditions: list[str], *, limit: int) -> str:
    order, user = Order._meta.db_table, Order._meta.get_field("buyer").related_model._meta.db_table
    dispute = Order._meta.get_field("dispute_record").related_model._meta.db_table
    milestone, escrow = OrderMilestone._meta.db_table, Escrow._meta.db_table
    where = " AND ".join(conditions) or "TRUE"
    return (
        f"SELECT o.id, o.public_id, o.client_order_ref, buyer.public_id, seller.public_id, o.amount, "  # noqa: S608
        f"o.currency, o.status, o.title, o.description, o.metadata, "
        f"{_API_TIMESTAMP.format('o.created_at')}, {_API_TIMESTAMP.format('o.updated_at')}, "
        f"EXISTS (SELECT 1 FROM {milestone} m WHERE m.order_id = o.id), "
        f"EXISTS (SELECT 1 FROM {escrow} e WHERE e.engagement_id = o.public_id), "
        f"EXISTS (SELECT 1 FROM {dispute} d WHERE d.order_id = o.id) "
        f"FROM {order} o JOIN {user} buyer ON buyer.id = o.buyer_id JOIN {user} seller ON seller.id = o.seller_id "
        # The limit written out (an int of 2 to 101): a prepared statement's plan knows it.
        f"WHERE {where} ORDER BY o.created_at DESC, o.id DESC LIMIT {int(limit)}"
    )


def orders_page_as_api(*, principal, filters: dict, limit: int, cursor: str | None) -> tuple[list[dict], bool]:
    """A page of the orders the key may see (as orders_visible), narrowed by OrderFilter's
    cleaned `filters`, newest first after the `cursor` order (as offerhub.api.pagination's
    keyset: an unknown cursor is an empty page): their Order objects (API.md §8) and whether more follow."""
    conditions, params = [], {}
    if principal.marketplace_id:
        conditions.append("o.marketplace_id = %(marketplace)s")
        params["marketplace"] = principal.marketplace_id
    buyer, seller = filters.get("buyer_id"), filters.get("seller_id")
    if buyer and seller:  # both: orders of either (OrderFilter._by_party)
        conditions.append("(buyer.public_id = %(buyer)s OR seller.public_id = %(seller)s)")
    elif buyer:
        conditions.append("buyer.public_id = %(buyer)s")
    elif seller:
        conditions.append("seller.public_id = %(seller)s")
    params.update(buyer=buyer, seller=seller)
    if "status" in filters:
        conditions.append("o.status = %(status)s")
        params["status"] = filters["status"]
    if "created_after" in filters:
        conditions.append("o.created_at >= %(after)s")
        params["after"] = filters["created_after"]
    if "created_before" in filters:
        conditions.append("o.created_at <= %(before)s")
        params["before"] = filters["created_before"]
    if cursor:
        # (created_at, id) before the anchor's; no anchor: NULL, so no rows (an empty page)
        conditions.append(
            f"(o.created_at, o.id) < (SELECT a.created_at, a.id FROM {Order._meta.db_table} a "  # noqa: S608
            "WHERE a.public_id = %(cursor)s)"
        )
        params["cursor"] = cursor
    with prepared_cursor() as db:
        db.execute(_orders_page_sql(conditions, limit=limit + 1), params)
        rows = db.fetchall()
    has_more = len(rows) > limit
    rows = rows[:limit]
    metadata = Order._meta.get_field("metadata")
    items, related = [], []
    for row in rows:
        pk, public_id, ref, buyer_id, seller_id, amount, currency, status, title, text, meta = row[:11]
        created, updated = row[11:13]
        fields = {
            "public_id": public_id,
            "client_order_ref": ref,
            "amount": amount,
            "currency": currency,
            "status": status,
            "title": title,
            "description": text,
            "metadata": metadata.from_db_value(meta, None, connection),
        }
        if not any(row[13:]):
            items.append(
                _order_fields_as_api(
                    buyer_id=buyer_id, seller_id=seller_id, created_at=created, updated_at=updated, **fields
                )
            )
            continue
        # The model's times from the API's text: to the millisecond, all that order_as_api shows.
        fields["created_at"] = dt.datetime.fromisoformat(created)
        fields["updated_at"] = dt.datetime.fromisoformat(updated)
        # Milestones, an escrow or a dispute: the model (from these columns; nothing read again),
        # completed by orders_with_escrows in one query per kind for the whole page.
        order = Order.from_db(connection.alias, ["id", *fields], [pk, *fields.values()])
        order.api_buyer_id, order.api_seller_id = buyer_id, seller_id
        order.api_has_milestones, order.api_has_escrow, order.api_has_dispute = row[13:]
        related.append(order)
        items.append(order)
    if related:
        orders_with_escrows(related)
        items = [order_as_api(item) if isinstance(item, Order) else item for item in items]
    return items, has_more
