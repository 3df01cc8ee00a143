"""REST endpoints for orders and their resolution (API.md §8, §9).

The views parse and answer; every change is a service of `marketplace.orders`, called
with the API key as actor. Steps that talk to Trustless Work (`escrow`, `escrow/fund`,
a milestone's `release`, resolution `release`/`refund`) are not one transaction: the
service commits the step's intent, the step runner submits it, and the view waits up to
OFFERHUB_SYNC_WAIT_SECONDS for the outcome. It answers the final state, the provider's
refusal as an error, or 202 with the intermediate state while the chain is slower.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Max

from escrow.client import ERROR_CODES as PROVIDER_ERROR_CODES
from escrow.models import Escrow, EscrowStep
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
from marketplace.orders_selectors import milestone_as_api, order_as_api, order_get, orders_filter, orders_with_escrows
from offerhub.api.base import ApiView
from offerhub.api.envelope import api_list_response, api_response
from offerhub.api.errors import validation_error
from offerhub.api.idempotency import RETENTION_ORDERS
from offerhub.api.pagination import paginate
from offerhub.api.parsing import parse_amount, parse_currency, require_fields
from offerhub.errors import STATUS_BY_CODE, ServiceError
from offerhub.money import MoneyFormatError, money_parse, money_to_stroops
from payments.selectors import api_user_get

S = Order.Status
Action = EscrowStep.Action
ORDER_FIELDS = {
    "buyer_id",
    "seller_id",
    "amount",
    "currency",
    "title",
    "description",
    "client_order_ref",
    "milestones",
    "metadata",
}
MILESTONE_FIELDS = {"milestone_ref", "ref", "title", "description", "amount"}
MAX_MILESTONES = 50
OPEN_STEPS = (EscrowStep.Status.PENDING, EscrowStep.Status.SUBMITTED)


def _actor(request) -> OrderActor:
    return OrderActor.for_api_key(request.auth)


def _as_api_error(
    error: ServiceError, *, state: Callable[[], tuple[str, tuple[str, ...]]] | None = None
) -> ServiceError:
    """An order service's refusal in the API's codes (API.md §1.7); `state` gives
    INVALID_STATE's `currentState` and `allowedStates`."""
    if error.code == "VALIDATION_ERROR":
        return validation_error([(error.field, error.message)])
    details = dict(error.details)
    if error.field:
        details.setdefault("field", error.field)
    if error.code == "INVALID_STATE" and state is not None:
        current, allowed = state()
        details.setdefault("currentState", current)
        details.setdefault("allowedStates", list(allowed))
    code = error.code if error.code in STATUS_BY_CODE else "INVALID_REQUEST"
    return ServiceError(code, error.message, details=details)


# --- Input ----------------------------------------------------------------------------------


def _string(data: dict, field: str, problems: list, *, required: bool = False, max_length: int | None = None):
    value = data.get(field)
    if value is None or value == "":
        if required:
            problems.append((field, "is required"))
        return None
    if not isinstance(value, str):
        problems.append((field, "must be a string"))
        return None
    if max_length is not None and len(value) > max_length:
        problems.append((field, f"must be at most {max_length} characters"))
        return None
    return value


def _either(item: dict, names: tuple[str, str], where: str, problems: list) -> str | None:
    """A milestone field given under either of its names (API.md §8: both shapes)."""
    values = [item[name] for name in names if item.get(name) not in (None, "")]
    if not values:
        problems.append((f"{where}.{names[0]}", "is required"))
        return None
    if any(not isinstance(value, str) for value in values):
        problems.append((f"{where}.{names[0]}", "must be a string"))
        return None
    if len(set(values)) > 1:
        problems.append((f"{where}.{names[0]}", f"{names[0]} and {names[1]} differ"))
        return None
    return values[0]


def _milestones(raw, problems: list) -> list[dict]:
    """`[{milestone_ref, title, amount}]` or the SDK's `[{ref, description, amount}]`."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_MILESTONES:
        problems.append(("milestones", f"must be a list of 1 to {MAX_MILESTONES} milestones"))
        return []
    milestones = []
    for index, item in enumerate(raw):
        where = f"milestones.{index}"
        if not isinstance(item, dict):
            problems.append((where, "must be an object"))
            continue
        problems += [(f"{where}.{name}", "unknown field") for name in sorted(set(item) - MILESTONE_FIELDS)]
        ref = _either(item, ("milestone_ref", "ref"), where, problems)
        if ref is not None and (len(ref) > 100 or "/" in ref or ref != ref.strip()):
            problems.append((f"{where}.milestone_ref", "must be at most 100 characters, without '/' or edge spaces"))
        title = _either(item, ("title", "description"), where, problems)
        if title is not None and len(title) > 255:
            problems.append((f"{where}.title", "must be at most 255 characters"))
        try:
            amount = money_to_stroops(money_parse(item.get("amount")))
        except MoneyFormatError as exc:
            problems.append((f"{where}.amount", "is required" if item.get("amount") in (None, "") else str(exc)))
            continue
        if ref is not None and title is not None:
            milestones.append({"ref": ref, "title": title, "amount": amount})
    return milestones


def _optional_body(request, allowed: set[str], required: tuple[str, ...] = ()) -> dict:
    """An action's body: empty, `{}`, or only the listed fields, each a string."""
    data = require_fields(request.data or {}, allowed, required)
    problems = [
        (name, "must be a string") for name in sorted(data) if name != "amount" and not isinstance(data[name], str)
    ]
    if problems:
        raise validation_error(problems)
    return data


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


def _steps_mark() -> int:
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


def _await(order: Order, spec: ProviderStep, *, after: int) -> tuple[Order, bool]:
    """Wait for the step's outcome: (order, finished). A refusal raises its error."""
    deadline = time.monotonic() + settings.OFFERHUB_SYNC_WAIT_SECONDS
    while True:
        order.refresh_from_db()
        escrow = order_escrow(order)
        refused = _refusal(escrow, spec, after=after)
        if refused is not None:
            raise _refusal_error(refused, spec, order)
        if spec.succeeded(order, escrow):
            return order, True
        if not spec.pending(order, escrow):  # rolled back by an earlier attempt's refusal
            raise _refusal_error(_refusal(escrow, spec), spec, order)
        if time.monotonic() >= deadline:
            return order, False
        time.sleep(0.2)


# --- Views ------------------------------------------------------------------------------------


class OrderListCreateView(ApiView):
    required_scopes = {"GET": "read", "POST": "write"}
    idempotency_retention = RETENTION_ORDERS

    def get(self, request):
        rows = orders_filter(principal=request.auth, params=request.query_params)
        page = paginate(rows, params=request.query_params, id_field="public_id")
        orders = orders_with_escrows(page.items)
        return api_list_response(
            [order_as_api(o) for o in orders], has_more=page.has_more, next_cursor=page.next_cursor
        )

    def post(self, request):
        data = require_fields(request.data, ORDER_FIELDS)
        problems: list[tuple[str, str]] = []
        buyer_id = _string(data, "buyer_id", problems, required=True, max_length=40)
        seller_id = _string(data, "seller_id", problems, required=True, max_length=40)
        try:
            amount = money_to_stroops(parse_amount(data))
        except ServiceError as error:
            problems += [(f["field"], f["message"]) for f in error.details["fields"]]
            amount = None
        title = _string(data, "title", problems, required=True, max_length=100)
        description = _string(data, "description", problems) or ""
        client_order_ref = _string(data, "client_order_ref", problems, max_length=255) or ""
        milestones = _milestones(data.get("milestones"), problems)
        metadata = data.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            problems.append(("metadata", "must be an object"))
        if problems:
            raise validation_error(problems)
        parse_currency(data)
        buyer = api_user_get(principal=request.auth, public_id=buyer_id)
        seller = api_user_get(principal=request.auth, public_id=seller_id)
        try:
            order, created = order_create(
                buyer=buyer,
                seller=seller,
                amount=amount,
                title=title,
                description=description,
                milestones=milestones,
                client_order_ref=client_order_ref,
                metadata=metadata,
                marketplace_id=request.auth.marketplace_id,
                actor=_actor(request),
            )
        except ServiceError as error:
            raise _as_api_error(error) from None
        order = order_get(principal=request.auth, public_id=order.public_id)
        return api_response(order_as_api(order), status=201 if created else 200)


class OrderDetailView(ApiView):
    required_scope = "read"

    def get(self, request, order_id):
        return api_response(order_as_api(order_get(principal=request.auth, public_id=order_id)))


class OrderMilestonesView(ApiView):
    required_scope = "read"

    def get(self, request, order_id):
        order = order_get(principal=request.auth, public_id=order_id)
        return api_response([milestone_as_api(m, order_id=order.public_id) for m in order.milestones.all()])


class _OrderActionView(ApiView):
    """POST /orders/{id}/…: `run` calls the service; the answer is the Order (`status`)."""

    required_scope = "write"
    idempotency_retention = RETENTION_ORDERS
    fields: set[str] = set()
    required: tuple[str, ...] = ()
    allowed_states: tuple[str, ...] = ()  # for INVALID_STATE's details
    status = 201

    def run(self, request, order: Order, data: dict, **kwargs):
        raise NotImplementedError

    def state(self, order: Order, **kwargs) -> tuple[str, tuple[str, ...]]:
        """(current, allowed) states for INVALID_STATE: the order's, or a milestone's."""
        order.refresh_from_db(fields=["status"])
        return order.status, self.allowed_states

    def act(self, request, order_id, **kwargs) -> tuple[Order, object]:
        data = _optional_body(request, self.fields, self.required)
        order = order_get(principal=request.auth, public_id=order_id)
        try:
            return order, self.run(request, order, data, **kwargs)
        except ServiceError as error:
            raise _as_api_error(error, state=lambda: self.state(order, **kwargs)) from None

    def post(self, request, order_id, **kwargs):
        self.act(request, order_id, **kwargs)
        return api_response(order_as_api(order_get(principal=request.auth, public_id=order_id)), status=self.status)


class _MilestoneActionMixin:
    milestone_allowed: tuple[str, ...] = ()

    def state(self, order: Order, ref: str) -> tuple[str, tuple[str, ...]]:
        order.refresh_from_db(fields=["status"])
        milestone = order.milestones.filter(ref=ref).first()
        if order.status == S.IN_PROGRESS and milestone is not None:
            return milestone.status, self.milestone_allowed
        return order.status, self.allowed_states


class OrderReserveView(_OrderActionView):
    fields = {"amount"}
    allowed_states = (S.ORDER_CREATED,)

    def run(self, request, order, data):
        amount = money_to_stroops(parse_amount(data)) if data.get("amount") is not None else None
        order_reserve(order=order, actor=_actor(request), amount=amount)


class OrderCancelView(_OrderActionView):
    fields = {"reason"}
    allowed_states = (S.ORDER_CREATED, S.FUNDS_RESERVED)

    def run(self, request, order, data):
        order_cancel(order=order, actor=_actor(request), reason=data.get("reason", ""))


class _ProviderStepView(_OrderActionView):
    """Commits as it goes (the step's intent before its submission), then waits for the chain."""

    atomic_handler = False
    pending_status = 202

    def spec(self, order: Order, **kwargs) -> ProviderStep:
        raise NotImplementedError

    def post(self, request, order_id, **kwargs):
        after = _steps_mark()
        order, _ = self.act(request, order_id, **kwargs)
        order, finished = _await(order, self.spec(order, **kwargs), after=after)
        return api_response(
            order_as_api(order_get(principal=request.auth, public_id=order_id)),
            status=self.status if finished else self.pending_status,
        )


class OrderEscrowView(_ProviderStepView):
    allowed_states = (S.FUNDS_RESERVED,)

    def run(self, request, order, data):
        order_escrow_create(order=order, actor=_actor(request))

    def spec(self, order):
        return ProviderStep(
            actions=(Action.DEPLOY,),
            pending=lambda o, e: o.status == S.ESCROW_CREATING,
            succeeded=lambda o, e: o.status not in (S.FUNDS_RESERVED, S.ESCROW_CREATING),
        )


class OrderEscrowFundView(_ProviderStepView):
    allowed_states = (S.ESCROW_FUNDING,)

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


class OrderMilestoneCompleteView(_MilestoneActionMixin, _OrderActionView):
    """Our record is final at once; the seller's mark on the contract follows in the background."""

    allowed_states = (S.IN_PROGRESS,)
    milestone_allowed = (OrderMilestone.Status.OPEN,)

    def run(self, request, order, data, ref):
        return order_milestone_complete(order=order, ref=ref, actor=_actor(request))

    def post(self, request, order_id, ref):
        order, milestone = self.act(request, order_id, ref=ref)
        return api_response(milestone_as_api(milestone, order_id=order.public_id), status=201)


class OrderMilestoneReleaseView(_MilestoneActionMixin, _ProviderStepView):
    allowed_states = (S.IN_PROGRESS,)
    milestone_allowed = (OrderMilestone.Status.COMPLETED,)
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


class OrderResolutionReleaseView(_ProviderStepView):
    fields = {"reason", "requestedBy"}
    allowed_states = (S.IN_PROGRESS,)
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


class OrderResolutionRefundView(_ProviderStepView):
    fields = {"reason"}
    required = ("reason",)
    allowed_states = (S.IN_PROGRESS,)
    status = 200

    def run(self, request, order, data):
        order_refund(order=order, actor=_actor(request), reason=data["reason"])

    def spec(self, order):
        return ProviderStep(
            actions=(Action.DISPUTE, Action.DISPUTE_MILESTONE, Action.RESOLVE, Action.RESOLVE_MILESTONE),
            pending=lambda o, e: o.status == S.REFUND_REQUESTED,
            succeeded=lambda o, e: o.status in (S.REFUNDED, S.CLOSED),
        )
