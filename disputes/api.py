"""POST /orders/{id}/resolution/dispute (API.md §9): open the order's dispute."""

from disputes.models import Dispute
from disputes.services import dispute_open
from marketplace.models import Order
from marketplace.orders import OrderActor
from marketplace.orders_api import _as_api_error
from marketplace.orders_selectors import dispute_as_api, order_as_api, order_get
from offerhub.api.base import ApiView
from offerhub.api.envelope import api_response
from offerhub.api.errors import validation_error
from offerhub.api.idempotency import RETENTION_ORDERS
from offerhub.api.parsing import require_fields
from offerhub.errors import ServiceError

FIELDS = {"openedBy", "reason", "evidence", "orderId"}


def _evidence(value) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) and 0 < len(item) <= 2000 for item in value):
        raise validation_error([("evidence", "must be a list of URLs or short texts")])
    if len(value) > 20:
        raise validation_error([("evidence", "at most 20 items")])
    return value


def _state(order: Order) -> tuple[str, tuple[str, ...]]:
    return Order.objects.get(pk=order.pk).status, (Order.Status.IN_PROGRESS,)


class OrderDisputeOpenView(ApiView):
    required_scope = "write"
    idempotency_retention = RETENTION_ORDERS
    atomic_handler = False  # the escrow's dispute call must commit before the runner signs it

    def post(self, request, order_id):
        if not request.data:
            raise validation_error([("openedBy", "is required"), ("reason", "is required")])
        data = require_fields(request.data, FIELDS, ("openedBy", "reason"))
        problems = []
        if data["openedBy"] not in Dispute.OpenedBy.values:
            problems.append(("openedBy", "must be BUYER or SELLER"))
        if data["reason"] not in Dispute.Reason.values:
            problems.append(("reason", f"must be one of {', '.join(Dispute.Reason.values)}"))
        if problems:
            raise validation_error(problems)
        evidence = _evidence(data.get("evidence"))
        if data.get("orderId") not in (None, order_id):
            raise ServiceError("INVALID_REQUEST", "orderId must be the order in the path", details={"field": "orderId"})
        order = order_get(principal=request.auth, public_id=order_id)
        try:
            dispute = dispute_open(
                order=order,
                actor=OrderActor.for_api_key(request.auth),
                opened_by=data["openedBy"],
                reason=data["reason"],
                evidence=evidence,
            )
        except ServiceError as error:
            raise _as_api_error(
                error, state=lambda: (Order.objects.get(pk=order.pk).status, ("IN_PROGRESS",))
            ) from None
        order = order_get(principal=request.auth, public_id=order_id)
        dispute.refresh_from_db()
        return api_response(dispute_as_api(dispute, order=order_as_api(order)), status=201)
