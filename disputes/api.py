"""POST /orders/{id}/resolution/dispute (API.md §9): open the order's dispute."""

from drf_spectacular.utils import extend_schema

from disputes.models import Dispute
from disputes.services import dispute_open
from marketplace.api_serializers import DisputeOpenInput, DisputeWithOrderOutput
from marketplace.orders import OrderActor
from marketplace.orders_selectors import dispute_as_api, order_as_api, order_get
from offerhub.api.base import ApiView
from offerhub.api.envelope import api_response
from offerhub.api.idempotency import RETENTION_ORDERS
from offerhub.api.serializers import validated
from offerhub.errors import ServiceError


class OrderDisputeOpenView(ApiView):
    required_scope = "write"
    idempotency_retention = RETENTION_ORDERS
    atomic_handler = False  # the escrow's dispute call must commit before the runner signs it

    @extend_schema(
        summary="Open the order's dispute: the order and its escrow freeze",
        tags=["orders"],
        request=DisputeOpenInput,
        responses={201: DisputeWithOrderOutput},
    )
    def post(self, request, order_id):
        data = validated(DisputeOpenInput, request.data)
        if data.get("orderId") not in (None, order_id):
            raise ServiceError("INVALID_REQUEST", "orderId must be the order in the path", field="orderId")
        order = order_get(principal=request.auth, public_id=order_id)
        dispute = dispute_open(
            order=order,
            actor=OrderActor.for_api_key(request.auth),
            opened_by=data["openedBy"],
            reason=data["reason"],
            evidence=data.get("evidence"),
        )
        order = order_get(principal=request.auth, public_id=order_id)
        # A fresh read, not refresh_from_db(): django-fsm unprotects `status` class-wide meanwhile.
        dispute = Dispute.objects.select_related("order").get(pk=dispute.pk)
        return api_response(dispute_as_api(dispute, order=order_as_api(order)), status=201)
