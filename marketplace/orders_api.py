"""REST endpoints for orders and their resolution (API.md §8, §9).

The views validate with `marketplace.api_serializers` and answer; every change is a service
of `marketplace.orders`, called with the API key as actor, whose refusals (`ServiceError`)
reach the client as they are. Steps that talk to Trustless Work (`escrow`, `escrow/fund`,
a milestone's `release`, resolution `release`/`refund`) are not one transaction: the
service commits the step's intent, the step runner submits it, and the view waits up to
OFFERHUB_SYNC_WAIT_SECONDS for the outcome, woken by the order's change notification
(offerhub.waits; on the event loop under ASGI, holding no thread). It answers the final state,
the provider's refusal as an error, or 202 with the intermediate state while the chain is slower.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.db.models import Max
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import serializers

from escrow.client import ERROR_CODES as PROVIDER_ERROR_CODES
from escrow.models import Escrow, EscrowStep
from marketplace.api_serializers import (
    EmptyInput,
    MilestoneOutput,
    OrderCancelInput,
    OrderCreateInput,
    OrderOutput,
    OrderRefundInput,
    OrderReleaseInput,
    OrderReserveInput,
)
from marketplace.filters import OrderFilter
from marketplace.models import Order, OrderMilestone
from marketplace.orders import (
    OrderActor,
    order_cancel,
    order_create,
    order_escrow,
    order_escrow_create,
    order_escrow_fund,
    order_milestone_complete,
    order_milestone_release,
    order_refund,
    order_release,
    order_reserve,
)
from marketplace.orders_selectors import milestone_as_api, order_as_api, order_get, orders_page_as_api
from offerhub.api.base import ApiView
from offerhub.api.envelope import api_list_response, api_response
from offerhub.api.idempotency import RETENTION_ORDERS
from offerhub.api.pagination import page_params
from offerhub.api.serializers import validated
from offerhub.correlation import correlation_id_var
from offerhub.errors import STATUS_BY_CODE, ServiceError
from offerhub.filters import filter_values
from offerhub.money import money_to_stroops
from offerhub.waits import (
    DeferredAnswer,
    DeferredResponse,
    answer_slot,
    database,
    order_changes,
    order_changes_async,
    recheck_seconds,
)
from payments.selectors import api_user_get

S = Order.Status
Action = EscrowStep.Action
OPEN_STEPS = (EscrowStep.Status.PENDING, EscrowStep.Status.SUBMITTED)
TAGS = ["orders"]


def _actor(request) -> OrderActor:
    return OrderActor.for_api_key(request.auth)


# --- Waiting for the chain ------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderStep:
    """What a provider-backed endpoint waits for: its escrow calls, and the order states
    that mean still running and done."""

    actions: tuple[str, ...]
    pending: Callable[[Order, Escrow | None], bool]
    succeeded: Callable[[Order, Escrow | None], bool]
    refusal_code: str | None = None  # the code of every refusal that is not a provider outage
    milestone_index: int | None = None


def provider_steps_mark() -> int:
    """The newest step id now: the steps a request queues come after it."""
    return EscrowStep.objects.aggregate(last=Max("pk"))["last"] or 0


def _refusal(escrow: Escrow | None, spec: ProviderStep, *, after: int = 0) -> EscrowStep | None:
    """The last step of this kind the provider refused (not the ones failed along with it)."""
    if escrow is None:
        return None
    steps = escrow.steps.filter(pk__gt=after, action__in=spec.actions, status=EscrowStep.Status.FAILED).exclude(
        error_code="PREVIOUS_STEP_FAILED"
    )
    if spec.milestone_index is not None:
        steps = steps.filter(milestone_index=spec.milestone_index)
    return steps.order_by("-pk").first()


def _refusal_error(step: EscrowStep | None, spec: ProviderStep, order: Order) -> ServiceError:
    if step is None:
        return ServiceError(
            "PROVIDER_ERROR", "Trustless Work did not complete the step", details={"orderId": order.public_id}
        )
    code = PROVIDER_ERROR_CODES.get(step.error_code, step.error_code)
    if code == "tx_failed":
        code = "STELLAR_NETWORK_ERROR"
    elif code in STATUS_BY_CODE and STATUS_BY_CODE[code] >= 500:
        pass  # the provider's outage as it is
    elif spec.refusal_code:
        code = spec.refusal_code
    elif code not in STATUS_BY_CODE or STATUS_BY_CODE[code] < 409:
        code = "PROVIDER_ERROR"  # not one of API.md's codes for a refused call
    return ServiceError(
        code,
        f"Trustless Work refused {step.action}: {step.error_message or step.error_code}",
        details={
            "orderId": order.public_id,
            "orderStatus": order.status,
            "step": step.action,
            "providerCode": step.error_code,
        },
    )


def provider_step_outcome(order: Order, spec: ProviderStep, *, after: int) -> tuple[Order, bool]:
    """(order, finished) as the database has it now. A refusal raises its error."""
    # A fresh read each time, never refresh_from_db(): django-fsm unprotects `status` for the
    # whole class while it refreshes, failing a refresh in a concurrent request.
    order = Order.objects.get(pk=order.pk)
    escrow = order_escrow(order)
    refused = _refusal(escrow, spec, after=after)
    if refused is not None:
        raise _refusal_error(refused, spec, order)
    if spec.succeeded(order, escrow):
        return order, True
    if spec.pending(order, escrow):
        return order, False
    # Each check is a read of its own: the step may have ended between them (4 concurrent
    # clients saw a 502 for a release that succeeded). No longer running, its outcome is
    # final, so it is read again before calling it a refusal.
    order = Order.objects.get(pk=order.pk)
    escrow = order_escrow(order)
    if spec.succeeded(order, escrow):
        return order, True
    # rolled back by an earlier attempt's refusal, or refused just now
    raise _refusal_error(_refusal(escrow, spec, after=after) or _refusal(escrow, spec), spec, order)


def _wait_deadline() -> float:
    return time.monotonic() + settings.OFFERHUB_SYNC_WAIT_SECONDS


def provider_step_await(
    order: Order, spec: ProviderStep, *, after: int, deadline: float | None = None
) -> tuple[Order, bool]:
    """Wait in this thread for the step's outcome: (order, finished). A refusal raises its error.
    Woken by the order's change notification (offerhub.waits), with a slow re-check besides."""
    deadline = _wait_deadline() if deadline is None else deadline
    with order_changes(order.public_id) as changes:  # before the read: nothing committed after it is missed
        while True:
            order, finished = provider_step_outcome(order, spec, after=after)
            left = deadline - time.monotonic()
            if finished or left <= 0:
                return order, finished
            _connection_release()
            changes.wait(min(left, recheck_seconds()))


async def provider_step_await_async(order: Order, spec: ProviderStep, *, after: int, deadline: float) -> bool:
    """The same wait on the event loop, holding no thread: only its reads take one, briefly."""
    async with order_changes_async(order.public_id) as changes:
        while True:
            order, finished = await database(provider_step_outcome, order, spec, after=after)
            left = deadline - time.monotonic()
            if finished or left <= 0:
                return finished
            await changes.wait(min(left, recheck_seconds()))


def provider_step_answer(view, order: Order, spec: ProviderStep, *, after: int, answer: Callable[[bool], object]):
    """The view's answer once the step is done or the wait ran out: `answer(finished)`.

    Under ASGI the wait is deferred to the event loop (offerhub.waits.deferred_answers) and this
    thread is free at once; under WSGI (gunicorn, the test client) this thread waits, woken by
    the order's change notification."""
    deadline = _wait_deadline()
    order, finished = provider_step_outcome(order, spec, after=after)
    if finished or time.monotonic() >= deadline:
        return answer(finished)
    slot = answer_slot(view.request)
    if slot is None or view.atomic_handler:  # an atomic handler's transaction cannot outlive its thread
        _, finished = provider_step_await(order, spec, after=after, deadline=deadline)
        return answer(finished)

    def finish(outcome) -> object:
        # On a database thread: the request's id for its log lines, as its own thread had it.
        correlation_id_var.set(getattr(view.request, "correlation_id", None))

        def make_response():
            if isinstance(outcome, BaseException):
                raise outcome
            return answer(outcome)

        return view.dispatch_deferred_finish(record=deferred.idempotency_record, make_response=make_response)

    deferred = DeferredAnswer(
        wait=lambda: provider_step_await_async(order, spec, after=after, deadline=deadline), finish=finish
    )
    slot.answer = deferred
    return DeferredResponse(deferred)


def _connection_release() -> None:
    """Give the pooled connection back while waiting: a wait of up to a minute must not hold
    one of the pool's few (the sandbox served by this process and other requests need them).
    The next read takes one again. Without a pool this would open a connection per read."""
    if getattr(connection, "pool", None) is not None and not connection.in_atomic_block:
        connection.close()


# --- Views ------------------------------------------------------------------------------------


class OrderListCreateView(ApiView):
    required_scopes = {"GET": "read", "POST": "write"}
    idempotency_retention = RETENTION_ORDERS

    filter_backends = [DjangoFilterBackend]
    filterset_class = OrderFilter
    queryset = Order.objects.none()  # for the schema; the rows are the key's own below

    @extend_schema(summary="List orders", tags=TAGS, responses=OrderOutput(many=True))
    def get(self, request):
        filters = filter_values(filterset_class=self.filterset_class, params=request.query_params)
        limit, cursor = page_params(request.query_params)
        items, has_more = orders_page_as_api(principal=request.auth, filters=filters, limit=limit, cursor=cursor)
        return api_list_response(items, has_more=has_more, next_cursor=items[-1]["id"] if has_more else None)

    @extend_schema(
        summary="Create an order (the same client_order_ref and terms again: 200 with the first order)",
        tags=TAGS,
        request=OrderCreateInput,
        responses={201: OrderOutput, 200: OrderOutput},
    )
    def post(self, request):
        data = validated(OrderCreateInput, request.data)
        buyer = api_user_get(principal=request.auth, public_id=data["buyer_id"])
        seller = api_user_get(principal=request.auth, public_id=data["seller_id"])
        order, created = order_create(
            buyer=buyer,
            seller=seller,
            amount=money_to_stroops(data["amount"]),
            title=data["title"],
            description=data.get("description") or "",
            milestones=[
                {"ref": m["ref"], "title": m["title"], "amount": money_to_stroops(m["amount"])}
                for m in data.get("milestones") or []
            ],
            client_order_ref=data.get("client_order_ref") or "",
            metadata=data.get("metadata"),
            marketplace_id=request.auth.marketplace_id,
            actor=_actor(request),
        )
        order = order_get(principal=request.auth, public_id=order.public_id)
        return api_response(order_as_api(order), status=201 if created else 200)


class OrderDetailView(ApiView):
    required_scope = "read"

    @extend_schema(summary="Get an order", tags=TAGS, responses=OrderOutput)
    def get(self, request, order_id):
        return api_response(order_as_api(order_get(principal=request.auth, public_id=order_id)))


class OrderMilestonesView(ApiView):
    required_scope = "read"

    @extend_schema(summary="List an order's milestones", tags=TAGS, responses=MilestoneOutput(many=True))
    def get(self, request, order_id):
        order = order_get(principal=request.auth, public_id=order_id)
        # Every milestone in one page (at most 50): a list envelope that says there is no more (API.md §1.5).
        milestones = [milestone_as_api(m, order_id=order.public_id) for m in order.milestones.all()]
        return api_list_response(milestones, has_more=False, next_cursor=None)


class _OrderActionView(ApiView):
    """POST /orders/{id}/…: `run` calls the service; the answer is the Order (`status`)."""

    required_scope = "write"
    idempotency_retention = RETENTION_ORDERS
    input_serializer: type[serializers.Serializer] = EmptyInput
    status = 201

    def run(self, request, order: Order, data: dict, **kwargs):
        raise NotImplementedError

    def act(self, request, order_id, **kwargs) -> tuple[Order, object]:
        data = validated(self.input_serializer, request.data)
        order = order_get(principal=request.auth, public_id=order_id)
        return order, self.run(request, order, data, **kwargs)

    def post(self, request, order_id, **kwargs):
        self.act(request, order_id, **kwargs)
        return api_response(order_as_api(order_get(principal=request.auth, public_id=order_id)), status=self.status)


@extend_schema(
    summary="Hold the buyer's money for the order", tags=TAGS, request=OrderReserveInput, responses={201: OrderOutput}
)
class OrderReserveView(_OrderActionView):
    input_serializer = OrderReserveInput

    def run(self, request, order, data):
        amount = data.get("amount")
        order_reserve(order=order, actor=_actor(request), amount=None if amount is None else money_to_stroops(amount))


@extend_schema(summary="Cancel before funding", tags=TAGS, request=OrderCancelInput, responses={201: OrderOutput})
class OrderCancelView(_OrderActionView):
    input_serializer = OrderCancelInput

    def run(self, request, order, data):
        order_cancel(order=order, actor=_actor(request), reason=data.get("reason", ""))


class _ProviderStepView(_OrderActionView):
    """Commits as it goes (the step's intent before its submission), then waits for the chain."""

    atomic_handler = False
    pending_status = 202

    def spec(self, order: Order, **kwargs) -> ProviderStep:
        raise NotImplementedError

    def post(self, request, order_id, **kwargs):
        after = provider_steps_mark()
        order, _ = self.act(request, order_id, **kwargs)

        def answer(finished: bool):
            return api_response(
                order_as_api(order_get(principal=request.auth, public_id=order_id)),
                status=self.status if finished else self.pending_status,
            )

        return provider_step_answer(self, order, self.spec(order, **kwargs), after=after, answer=answer)


@extend_schema(
    summary="Deploy the order's escrow contract (202 while the chain is slower)",
    tags=TAGS,
    request=None,
    responses={201: OrderOutput, 202: OrderOutput},
)
class OrderEscrowView(_ProviderStepView):
    def run(self, request, order, data):
        order_escrow_create(order=order, actor=_actor(request))

    def spec(self, order):
        return ProviderStep(
            actions=(Action.DEPLOY,),
            pending=lambda o, e: o.status == S.ESCROW_CREATING,
            succeeded=lambda o, e: o.status not in (S.FUNDS_RESERVED, S.ESCROW_CREATING),
        )


@extend_schema(
    summary="Move the held money into the contract (202 while the chain is slower)",
    tags=TAGS,
    request=None,
    responses={201: OrderOutput, 202: OrderOutput},
)
class OrderEscrowFundView(_ProviderStepView):
    def run(self, request, order, data):
        order_escrow_fund(order=order, actor=_actor(request))

    def spec(self, order):
        return ProviderStep(
            actions=(Action.FUND,),
            pending=lambda o, e: e is not None and e.status == Escrow.Status.FUNDING,
            # Funded: the order starts in the same transaction (ESCROW_FUNDED → IN_PROGRESS).
            succeeded=lambda o, e: e is not None and e.funded_at is not None and o.status != S.ESCROW_FUNDED,
            refusal_code="ESCROW_FUNDING_FAILED",
        )


@extend_schema(summary="Mark a milestone delivered", tags=TAGS, request=None, responses={201: MilestoneOutput})
class OrderMilestoneCompleteView(_OrderActionView):
    """Our record is final at once; the seller's mark on the contract follows in the background."""

    def run(self, request, order, data, ref):
        return order_milestone_complete(order=order, ref=ref, actor=_actor(request))

    def post(self, request, order_id, ref):
        order, milestone = self.act(request, order_id, ref=ref)
        return api_response(milestone_as_api(milestone, order_id=order.public_id), status=201)


@extend_schema(
    summary="Approve and pay one delivered milestone (202 while the chain is slower)",
    tags=TAGS,
    request=None,
    responses={200: OrderOutput, 202: OrderOutput},
)
class OrderMilestoneReleaseView(_ProviderStepView):
    status = 200

    def run(self, request, order, data, ref):
        order_milestone_release(order=order, ref=ref, actor=_actor(request))

    def spec(self, order, ref):
        milestone = order.milestones.get(ref=ref)

        def released(o, e) -> bool:
            return OrderMilestone.objects.filter(pk=milestone.pk, status=OrderMilestone.Status.RELEASED).exists()

        def running(o, e) -> bool:
            steps = e.steps.filter(
                milestone_index=milestone.position, action__in=(Action.APPROVE, Action.RELEASE_MILESTONE)
            )
            return o.status == S.IN_PROGRESS and steps.filter(status__in=OPEN_STEPS).exists()

        return ProviderStep(
            actions=(Action.APPROVE, Action.RELEASE_MILESTONE),
            pending=running,
            succeeded=released,
            milestone_index=milestone.position,
        )


@extend_schema(
    summary="Release everything in escrow to the seller (202 while the chain is slower)",
    tags=TAGS,
    request=OrderReleaseInput,
    responses={200: OrderOutput, 202: OrderOutput},
)
class OrderResolutionReleaseView(_ProviderStepView):
    input_serializer = OrderReleaseInput
    status = 200

    def run(self, request, order, data):
        order_release(
            order=order, actor=_actor(request), reason=data.get("reason", ""), requested_by=data.get("requestedBy", "")
        )

    def spec(self, order):
        return ProviderStep(
            actions=(Action.APPROVE, Action.RELEASE, Action.RELEASE_MILESTONE),
            pending=lambda o, e: o.status == S.RELEASE_REQUESTED,
            succeeded=lambda o, e: o.status in (S.RELEASED, S.CLOSED),
        )


@extend_schema(
    summary="Refund the whole escrow to the buyer (202 while the chain is slower)",
    tags=TAGS,
    request=OrderRefundInput,
    responses={200: OrderOutput, 202: OrderOutput},
)
class OrderResolutionRefundView(_ProviderStepView):
    input_serializer = OrderRefundInput
    status = 200

    def run(self, request, order, data):
        order_refund(order=order, actor=_actor(request), reason=data["reason"])

    def spec(self, order):
        return ProviderStep(
            actions=(Action.DISPUTE, Action.DISPUTE_MILESTONE, Action.RESOLVE, Action.RESOLVE_MILESTONE),
            pending=lambda o, e: o.status == S.REFUND_REQUESTED,
            succeeded=lambda o, e: o.status in (S.REFUNDED, S.CLOSED),
        )
