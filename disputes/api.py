"""Disputes over the API: opening one on an order (API.md §9), and the case (§10): list,
read, assign, resolve. The resolution is paid on chain like the orders API's provider steps:
the view waits up to OFFERHUB_SYNC_WAIT_SECONDS for the payout and answers 200 with the
closed order, or 202 while the chain is slower (the order follows in the background)."""

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema

from disputes.api_serializers import DisputeAssignInput, DisputeResolveInput
from disputes.filters import DisputeFilter
from disputes.models import Dispute
from disputes.selectors import dispute_get, disputes_as_api, disputes_visible
from disputes.services import RESOLUTION_STEPS, dispute_assign, dispute_open, dispute_resolve
from marketplace.api_serializers import DisputeOpenInput, DisputeWithOrderOutput
from marketplace.models import Order
from marketplace.orders import OrderActor
from marketplace.orders_api import ProviderStep, provider_step_await, provider_steps_mark
from marketplace.orders_selectors import dispute_as_api, order_as_api, order_get
from offerhub.api.base import ApiView
from offerhub.api.envelope import api_list_response, api_response
from offerhub.api.idempotency import RETENTION_ORDERS
from offerhub.api.pagination import paginate
from offerhub.api.serializers import validated
from offerhub.errors import ServiceError
from offerhub.filters import rows_filtered
from offerhub.money import money_to_stroops

TAGS = ["disputes"]
S = Order.Status


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


# A decided case is paid by its resolution step; the order closes when the chain confirms it
# (the admin's Resolve page waits on the same).
DISPUTE_PAYOUT = ProviderStep(
    actions=RESOLUTION_STEPS,
    pending=lambda order, escrow: order.status in (S.DISPUTED, S.RELEASE_REQUESTED, S.REFUND_REQUESTED),
    succeeded=lambda order, escrow: order.status == S.CLOSED,
)


def _dispute_answer(request, public_id: str, *, status: int = 200):
    return api_response(disputes_as_api([dispute_get(principal=request.auth, public_id=public_id)])[0], status=status)


class DisputeListView(ApiView):
    required_scope = "read"
    filter_backends = [DjangoFilterBackend]
    filterset_class = DisputeFilter
    queryset = Dispute.objects.none()  # for the schema; the rows are the key's own below

    @extend_schema(summary="List disputes (newest first)", tags=TAGS, responses=DisputeWithOrderOutput(many=True))
    def get(self, request):
        rows = rows_filtered(view=self, request=request, rows=disputes_visible(principal=request.auth))
        page = paginate(rows, params=request.query_params, id_field="public_id")
        return api_list_response(disputes_as_api(page.items), has_more=page.has_more, next_cursor=page.next_cursor)


class DisputeDetailView(ApiView):
    required_scope = "read"

    @extend_schema(summary="Get a dispute", tags=TAGS, responses=DisputeWithOrderOutput)
    def get(self, request, dispute_id):
        return _dispute_answer(request, dispute_id)


class DisputeAssignView(ApiView):
    required_scope = "support"
    idempotency_retention = RETENTION_ORDERS

    @extend_schema(
        summary="Take the case for review: OPEN → UNDER_REVIEW",
        tags=TAGS,
        request=DisputeAssignInput,
        responses={200: DisputeWithOrderOutput},
    )
    def post(self, request, dispute_id):
        data = validated(DisputeAssignInput, request.data)
        dispute = dispute_get(principal=request.auth, public_id=dispute_id)
        dispute_assign(dispute=dispute, agent=data["assignedTo"], actor=OrderActor.for_api_key(request.auth))
        return _dispute_answer(request, dispute_id)


class DisputeResolveView(ApiView):
    required_scope = "support"
    idempotency_retention = RETENTION_ORDERS
    atomic_handler = False  # the payout's step must commit before the runner submits it

    @extend_schema(
        summary="Decide the case and pay it out on chain (202 while the chain is slower)",
        tags=TAGS,
        request=DisputeResolveInput,
        responses={200: DisputeWithOrderOutput, 202: DisputeWithOrderOutput},
    )
    def post(self, request, dispute_id):
        data = validated(DisputeResolveInput, request.data)
        dispute = dispute_get(principal=request.auth, public_id=dispute_id)
        after = provider_steps_mark()
        dispute = dispute_resolve(
            dispute=dispute,
            decision=data["decision"],
            release_amount=_stroops(data.get("releaseAmount")),
            refund_amount=_stroops(data.get("refundAmount")),
            note=data.get("note") or "",
            actor=OrderActor.for_api_key(request.auth),
        )
        _, finished = provider_step_await(Order.objects.get(pk=dispute.order_id), DISPUTE_PAYOUT, after=after)
        return _dispute_answer(request, dispute_id, status=200 if finished else 202)


def _stroops(amount):
    return None if amount is None else money_to_stroops(amount)
