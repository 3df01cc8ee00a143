"""Web pages of orders: checkout, the order page (with its live fragment and actions), and
the buyer's and seller's order lists. Thin: they parse input and call the order services
(marketplace.orders; opening a dispute is disputes.views, which also opens the support case)."""

from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_UP, Decimal

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_fsm import can_proceed, has_transition_perm

from disputes.case_page import CASE_FORMS, dispute_case, dispute_prefetches
from disputes.forms import EVIDENCE_HELP
from disputes.services import EVIDENCE_ACCEPT
from escrow.models import Escrow, EscrowStep
from escrow.services import escrow_fees
from marketplace.listings import listing_for_buyers
from marketplace.models import DisputeReason, Order, OrderMilestone
from marketplace.order_forms import (
    CheckoutForm,
    DeliverForm,
    MilestoneForm,
    ReasonForm,
    checkout_token_new,
)
from marketplace.orders import (
    OrderActor,
    order_cancel,
    order_checkout,
    order_delivery_file,
    order_escrow_create,
    order_milestone_complete,
    order_milestone_release,
    order_refund,
    order_release,
    seller_net,
)
from marketplace.references import order_pk_from_reference, order_reference
from marketplace.refund_fees import order_refund_fees_of
from offerhub.errors import ServiceError
from offerhub.files import private_file_response
from offerhub.models import Event
from offerhub.money import STROOPS_PER_UNIT, money_dollars
from payments.balances import balance_snapshot
from payments.wallets import wallet_ensure

S = Order.Status
ORDERS_PER_PAGE = 20


# --- Checkout -------------------------------------------------------------------------------------


@login_required
def checkout(request, public_id):
    listing = listing_for_buyers(public_id=public_id, viewer=request.user)
    if listing is not None and listing.seller_id == request.user.pk:
        messages.info(request, "This is your own listing: you cannot buy it.")
        return redirect("listing-detail", public_id=listing.public_id)
    if listing is None:
        raise Http404("No such listing")
    # The escrow needs both wallets active: start them now, they are ready by the time the buyer confirms.
    wallet_ensure(user=request.user)
    wallet_ensure(user=listing.seller)
    form = CheckoutForm(initial={"token": checkout_token_new(), "price_cents": listing.price_cents})
    if request.method == "POST":
        posted = CheckoutForm(request.POST)
        if not posted.is_valid():
            form = _checkout_again(listing, "This checkout form is not valid any more. Please check and confirm again.")
        elif posted.cleaned_data["price_cents"] != listing.price_cents:
            problem = f"The seller changed the price to ${listing.price:,.2f}. Please check and confirm again."
            form = _checkout_again(listing, problem, token=posted.cleaned_data["token"])
        else:
            form = posted
            try:
                order = order_checkout(buyer=request.user, listing=listing, checkout_token=form.cleaned_data["token"])
            except ServiceError as error:
                form.add_error(None, _checkout_problem(error))
            else:
                messages.success(request, "Order placed. We are securing your payment: this page follows it live.")
                return redirect("order-detail", public_id=order.public_id)
    return render(request, "marketplace/checkout.html", _checkout_context(request, listing, form))


def _checkout_again(listing, problem: str, *, token: str = "") -> CheckoutForm:
    """The form to confirm again (current price, a usable token), with what went wrong."""
    form = CheckoutForm({"token": token or checkout_token_new(), "price_cents": listing.price_cents})
    form.is_valid()
    form.add_error(None, problem)
    return form


def _checkout_problem(error: ServiceError) -> str:
    if error.code == "INSUFFICIENT_FUNDS":
        return (
            "Your available balance is not enough for this order. Nothing was charged or put on hold: "
            "add funds, then confirm again."
        )
    return f"We could not place the order ({error.message}). Nothing was charged or put on hold."


def _shortfall(stroops: int) -> Decimal:
    """What is missing, rounded up to the cent: adding that much is always enough."""
    return (Decimal(stroops) / STROOPS_PER_UNIT).quantize(Decimal("0.01"), rounding=ROUND_UP)


def _checkout_context(request, listing, form) -> dict:
    price = listing.price_cents * 100_000
    available = balance_snapshot(user=request.user).available
    net = seller_net(amount=price)
    return {
        "listing": listing,
        "form": form,
        "price": money_dollars(price),
        "available": money_dollars(available),
        "short_by": _shortfall(price - available) if available < price else None,
        "seller_receives": money_dollars(net),
        "fees": money_dollars(price) - money_dollars(net),
        "milestones": list(listing.milestones.all()),
    }


# --- The order page -------------------------------------------------------------------------------


def _order_for(request, public_id) -> Order:
    """The order with what its page shows, for its buyer, its seller or support; 404 for anyone else."""
    order = (
        Order.objects.select_related("buyer", "seller", "dispute_record")
        .prefetch_related("milestones", *dispute_prefetches())
        .filter(public_id=public_id)
        .first()
    )
    if order is None or not (order.is_participant(request.user) or request.user.is_support):
        raise Http404("No such order")
    return order


def _order_by_reference(request, reference: str) -> Order | None:
    """The order a short reference (`A7K2-93`, as people read it out) stands for, if the user may see it."""
    pk = order_pk_from_reference(reference)
    order = Order.objects.filter(pk=pk).first() if pk is not None else None
    if order is None or not (order.is_participant(request.user) or request.user.is_support):
        return None
    return order


def _escrow_for(order: Order) -> Escrow | None:
    working = EscrowStep.objects.filter(status__in=[EscrowStep.Status.PENDING, EscrowStep.Status.SUBMITTED])
    return (
        Escrow.objects.filter(engagement_id=order.public_id)
        .prefetch_related("milestones", Prefetch("steps", queryset=working, to_attr="working_steps"))
        .first()
    )


@dataclass
class Step:
    label: str
    state: str  # "done", "current" or "todo"


# The road of an order that goes well, in plain words, and the status at which each step is reached.
PROGRESS = [
    ("Funds reserved", S.FUNDS_RESERVED),
    ("Protection set up", S.ESCROW_FUNDING),
    ("Payment secured", S.ESCROW_FUNDED),
    ("In progress", S.IN_PROGRESS),
    ("Delivered", None),  # delivered_at
    ("Paid", S.RELEASED),
]
ROAD = [
    S.ORDER_CREATED,
    S.FUNDS_RESERVED,
    S.ESCROW_CREATING,
    S.ESCROW_FUNDING,
    S.ESCROW_FUNDED,
    S.IN_PROGRESS,
    S.RELEASE_REQUESTED,
    S.RELEASED,
]
OFF_ROAD = {S.DISPUTED, S.REFUND_REQUESTED, S.REFUNDED}  # left the road at IN_PROGRESS


def _progress(order: Order) -> list[Step]:
    if order.status == S.CLOSED and order.outcome == Order.Outcome.RELEASED:
        return [Step(label, "done") for label, _ in PROGRESS]
    if order.status == S.CLOSED:
        reached = -1 if order.outcome == Order.Outcome.CANCELED else ROAD.index(S.IN_PROGRESS)
    else:
        reached = ROAD.index(S.IN_PROGRESS) if order.status in OFF_ROAD else ROAD.index(order.status)
    steps, current_given = [], False
    for label, status in PROGRESS:
        done = order.delivered_at is not None if status is None else (reached >= 0 and reached >= ROAD.index(status))
        if done:
            steps.append(Step(label, "done"))
        elif not current_given and order.status not in OFF_ROAD | {S.CLOSED}:
            steps.append(Step(label, "current"))
            current_given = True
        else:
            steps.append(Step(label, "todo"))
    return steps


BADGES = {
    S.ORDER_CREATED: "secondary",
    S.FUNDS_RESERVED: "secondary",
    S.ESCROW_CREATING: "info",
    S.ESCROW_FUNDING: "info",
    S.ESCROW_FUNDED: "info",
    S.IN_PROGRESS: "primary",
    S.RELEASE_REQUESTED: "warning",
    S.RELEASED: "success",
    S.REFUND_REQUESTED: "warning",
    S.REFUNDED: "secondary",
    S.DISPUTED: "danger",
    S.CLOSED: "secondary",
}
OUTCOME_WORDS = {
    Order.Outcome.RELEASED: "seller paid",
    Order.Outcome.REFUNDED: "refunded to the buyer",
    Order.Outcome.CANCELED: "canceled",
}
# Background work runs in these states: the page polls quickly without a WebSocket.
BUSY = {
    S.ESCROW_CREATING,
    S.ESCROW_FUNDING,
    S.ESCROW_FUNDED,
    S.RELEASE_REQUESTED,
    S.REFUND_REQUESTED,
    S.RELEASED,
    S.REFUNDED,
}


def order_badge(order: Order) -> dict:
    """The status in plain words, and its Bootstrap colour."""
    label = order.get_status_display()
    colour = BADGES[order.status]
    if order.status == S.CLOSED and order.outcome:
        label = "canceled" if order.outcome == Order.Outcome.CANCELED else f"closed · {OUTCOME_WORDS[order.outcome]}"
        colour = "success" if order.outcome == Order.Outcome.RELEASED else "secondary"
    return {"label": label[:1].upper() + label[1:], "colour": colour}


def _who(actor_id: str, order: Order) -> str:
    if actor_id == order.buyer.public_id:
        return "the buyer"
    if actor_id == order.seller.public_id:
        return "the seller"
    return "support" if actor_id else "OfferHub"


def _usd(value) -> str:
    try:
        return f"${Decimal(str(value)):,.2f}"
    except (ArithmeticError, ValueError):
        return ""


def _dispute_reason(reason) -> str:
    label = dict(DisputeReason.choices).get(reason)
    return f": {label}" if label else ""


def _timeline_text(event: Event, order: Order) -> tuple[str, str] | None:
    """(icon, words) for an order event; None for the ones another already says."""
    p = event.payload or {}
    amount = _usd(p.get("amount"))
    words = {
        "order.created": ("cart-check", "Order placed"),
        "order.funds_reserved": ("lock", f"{amount} put on hold from the buyer's balance"),
        "order.escrow_creating": ("hourglass-split", "Setting up the payment protection"),
        "escrow.created": ("shield", "Payment protection set up"),
        "escrow.funding_started": ("arrow-right-circle", "Moving the payment into protection"),
        "order.escrow_funded": ("shield-check", f"Payment of {amount} secured in escrow"),
        "order.in_progress": ("play-circle", "Work started: the seller can begin"),
        "escrow.milestone_completed": ("box-seam", f"Delivered: {p.get('milestoneTitle') or 'the work'}"),
        "escrow.milestone_released": ("cash-coin", f"{amount} released to the seller"),
        "order.release_requested": (
            "hand-thumbs-up",
            f"Approved by {_who(p.get('requestedBy', ''), order)}: paying the seller",
        ),
        "order.released": ("cash-stack", f"Seller paid {_usd(p.get('netAmount')) or amount} (after fees)"),
        "order.refund_requested": (
            "arrow-counterclockwise",
            f"Refund started by {_who(p.get('requestedBy', ''), order)}",
        ),
        "order.refunded": ("arrow-return-left", "Payment refunded to the buyer"),
        "order.disputed": (
            "exclamation-octagon",
            f"Dispute opened by the {str(p.get('openedBy', 'buyer')).lower()}{_dispute_reason(p.get('reason'))}",
        ),
        "order.dispute_withdrawn": ("arrow-counterclockwise", "Dispute withdrawn: the order goes on"),
        "order.canceled": (
            "x-circle",
            "Order canceled" + (" · the hold was released" if p.get("fundsReleased") else ""),
        ),
        "order.closed": ("check2-all", "Order closed"),
    }
    return words.get(event.type)


def _timeline(order: Order) -> list[dict]:
    events = Event.objects.filter(aggregate_type="Order", aggregate_id=order.public_id).order_by("id")
    rows = []
    for event in events.only("id", "type", "payload", "occurred_at"):
        text = _timeline_text(event, order)
        if text is not None:
            rows.append({"when": event.occurred_at, "icon": text[0], "text": text[1], "id": event.id})
    return rows


def _may(order: Order, name: str, actor: OrderActor) -> bool:
    """Whether django-fsm lets this actor take transition `name` now (permission, source and conditions)."""
    method = getattr(order, name)
    return has_transition_perm(method, actor) and can_proceed(method)


def _actions(order: Order, user, milestones: list[OrderMilestone]) -> dict:
    """The buttons this user may use now. Support acts from the backoffice, not here."""
    none = {"any": False}
    if not order.is_participant(user):
        return none
    actor = OrderActor.for_user(user)
    buyer, seller = order.is_buyer(user), order.is_seller(user)
    working = order.status == S.IN_PROGRESS
    actions = {
        "cancel": _may(order, "cancel", actor),
        "retry": buyer and _may(order, "escrow_create", actor),
        "deliver": seller and working and not milestones and order.delivered_at is None,
        "deliver_milestones": [m for m in milestones if seller and working and m.status == OrderMilestone.Status.OPEN],
        "release_milestones": [
            m for m in milestones if buyer and working and m.status == OrderMilestone.Status.COMPLETED and not m.paying
        ],
        "release": buyer and order.delivered_at is not None and _may(order, "request_release", actor),
        "refund": seller and _may(order, "request_refund", actor),
        "dispute": _may(order, "dispute", actor),
    }
    actions["any"] = any(actions.values())
    return actions


def _deliver_forms(actions: dict, posted: DeliverForm | None = None) -> list[tuple[OrderMilestone | None, DeliverForm]]:
    """One delivery form for the order, or one per milestone still to deliver (ids kept unique);
    a refused `posted` form takes the place of the one it was sent from, as the seller filled it in."""

    def form(milestone: OrderMilestone | None, auto_id: str) -> DeliverForm:
        ref = milestone.ref if milestone else ""
        if posted is not None and posted.data.get("milestone", "") == ref:
            posted.auto_id = auto_id
            return posted
        if milestone is None:
            return DeliverForm(auto_id=auto_id)
        return DeliverForm(initial={"milestone": ref}, auto_id=auto_id)

    if actions.get("deliver"):
        return [(None, form(None, "deliver-%s"))]
    return [(m, form(m, f"deliver-{m.position}-%s")) for m in actions.get("deliver_milestones", [])]


def _escrow_link(escrow: Escrow | None) -> str:
    if escrow is None or not escrow.contract_id:
        return ""
    try:
        return reverse("escrow-detail", args=[escrow.contract_id])
    except NoReverseMatch:
        return f"/escrow/{escrow.contract_id}/"


def _milestones_shown(order: Order, escrow: Escrow | None) -> list[OrderMilestone]:
    """The order's milestones as its pages and their buttons (_actions) read them: with their
    `dollars`, and `paying` when their payout was asked for and is on its way (the step runs in
    the background). `escrow` as _escrow_for loads it (its working steps prefetched)."""
    paying = {
        step.milestone_index
        for step in (escrow.working_steps if escrow is not None else [])
        if step.action in (EscrowStep.Action.APPROVE, EscrowStep.Action.RELEASE_MILESTONE)
    }
    milestones = list(order.milestones.all())
    for milestone in milestones:
        milestone.dollars = money_dollars(milestone.amount)
        milestone.paying = milestone.status == OrderMilestone.Status.COMPLETED and milestone.position in paying
    return milestones


def _seller_net_of(payouts: list[int], escrow: Escrow | None) -> int:
    """What the seller receives of these payouts (each pays its own fees), at the platform fee the
    escrow was created with: an operator's later change of the setting does not apply to it."""
    percent = escrow.platform_fee_percent if escrow is not None else settings.OFFERHUB_PLATFORM_FEE_PERCENT
    return sum(escrow_fees(amount=amount, platform_fee_percent=percent).net for amount in payouts)


def _order_context(request, order: Order, posted: dict | None = None) -> dict:
    """What the order page shows; `posted` holds a refused form ("deliver", "refund", "dispute", or
    one of the dispute case's CASE_FORMS) to show again as it was filled in."""
    posted = posted or {}
    escrow = _escrow_for(order)
    milestones = _milestones_shown(order, escrow)
    delivery_evidence, delivery_file = "", None
    if escrow is not None and not milestones:
        first = next(iter(escrow.milestones.all()), None)
        delivery_evidence = first.evidence if first is not None else ""
        delivery_file = order_delivery_file(order=order)
    timeline = _timeline(order)
    actions = _actions(order, request.user, milestones)
    auto_release_at = None
    if order.delivered_at and order.status == S.IN_PROGRESS:
        auto_release_at = order.delivered_at + timedelta(hours=settings.OFFERHUB_INSPECTION_WINDOW_HOURS)
    settled = order.status == S.CLOSED
    case = dispute_case(order=order, escrow=escrow, user=request.user, posted=posted)
    return {
        "order": order,
        "badge": order_badge(order),
        "is_buyer": order.is_buyer(request.user),
        "is_seller": order.is_seller(request.user),
        "amount": money_dollars(order.amount),
        "seller_receives": money_dollars(_seller_net_of([order.amount], escrow)),
        "progress": _progress(order),
        "off_road": order.status in OFF_ROAD,
        "milestones": milestones,
        "delivery_evidence": delivery_evidence,
        "delivery_file": delivery_file,
        "timeline": timeline,
        "actions": actions,
        "deliver_forms": _deliver_forms(actions, posted.get("deliver")),
        "refund_form": posted.get("refund") if actions.get("refund") else None,
        "dispute_form": posted.get("dispute") if actions.get("dispute") else None,
        "dispute_reasons": DisputeReason.choices,
        "evidence_accept": EVIDENCE_ACCEPT,
        "evidence_help": EVIDENCE_HELP,
        "escrow_link": _escrow_link(escrow),
        "order_escrow": escrow,  # its balance and fee: what a refund would give back (_refund_fees.html)
        "working": order.status in BUSY or bool(escrow is not None and escrow.working_steps),
        "auto_release_at": auto_release_at,
        "inspection_hours": settings.OFFERHUB_INSPECTION_WINDOW_HOURS,
        "settled": settled,
        "poll_seconds": 0 if settled else 3 if order.status in BUSY else 10,
        "case": case,
        "dispute_forms_key": case["forms_key"] if case else "none",
        "version": f"{order.status}:{order.updated_at.timestamp()}:{timeline[-1]['id'] if timeline else 0}"
        + (f":{case['version']}" if case else ""),
    }


def _order_page(request, order: Order, context: dict):
    context["socket_path"] = f"/ws/orders/{order.public_id}/"
    return render(request, "marketplace/order_detail.html", context)


@login_required
def order_detail(request, public_id):
    if not public_id.startswith("ord_"):  # a short reference typed in: to the order's own address
        order = _order_by_reference(request, public_id)
        if order is None:
            raise Http404("No such order")
        return redirect("order-detail", public_id=order.public_id)
    order = _order_for(request, public_id)
    return _order_page(request, order, _order_context(request, order))


@login_required
@require_GET
def order_live(request, public_id):
    """The changing part of the order page, fetched again on every live update (or poll)."""
    order = _order_for(request, public_id)
    response = render(request, "marketplace/order_live.html", _order_context(request, order))
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_GET
def order_evidence(request, public_id, ref):
    """A delivered milestone's file, for the order's participants and support only."""
    order = _order_for(request, public_id)
    milestone = next((m for m in order.milestones.all() if m.ref == ref), None)
    if milestone is None or not milestone.evidence_file:
        raise Http404("No such file")
    name = milestone.evidence_file.name.rsplit("/", 1)[-1]
    return private_file_response(milestone.evidence_file, filename=f"{order.public_id}-{name}")


@login_required
@require_GET
def order_delivery_file_view(request, public_id):
    """The file delivered with an order without milestones, for its participants and support only."""
    order = _order_for(request, public_id)
    file = order_delivery_file(order=order)
    if file is None:
        raise Http404("No such file")
    return private_file_response(file, filename=f"{order.public_id}-{file.name.rsplit('/', 1)[-1]}")


# --- Actions (POST, CSRF-protected; each calls one service) -----------------------------------------


def _participant(request, public_id) -> tuple[Order, OrderActor]:
    order = _order_for(request, public_id)
    if not order.is_participant(request.user):
        raise PermissionDenied("support acts on orders from the backoffice")
    return order, OrderActor.for_user(request.user)


def _back(order: Order):
    return redirect("order-detail", public_id=order.public_id)


def _refused(request, order: Order, error: ServiceError):
    """A service's refusal as a flash message in plain words (the order may have moved on meanwhile)."""
    if error.code == "FORBIDDEN":
        raise PermissionDenied(error.message)
    if error.code == "INVALID_STATE":
        now = Order.objects.get(pk=order.pk)
        message = f"That is not possible any more: the order is now “{order_badge(now)['label'].lower()}”."
    elif error.code == "DISPUTE_ALREADY_OPEN":
        message = "A dispute is open on this order: support decides what happens to the payment."
    elif error.code == "ESCROW_NOT_READY" and (error.details or {}).get("inFlight"):
        message = "A payment from this order is still being confirmed. Please try again in a minute."
    elif error.code == "ESCROW_NOT_READY":
        message = "The payment protection is not ready yet. Please try again in a minute."
    else:
        message = f"That did not work: {error.message[:1].upper()}{error.message[1:]}."
    messages.error(request, message)
    return _back(order)


def _form_refused(request, order: Order, name: str, form, problem: str = ""):
    """The order page again with the refused form as the user filled it in, its errors in place, so
    nothing typed is lost. When the order no longer offers that form (it moved on meanwhile), the
    problem comes as a message on the order page instead."""
    context = _order_context(request, order, {name: form})
    shown = [form for _, form in context["deliver_forms"]] + [context["refund_form"], context["dispute_form"]]
    if context["case"]:
        shown += [context["case"][f"{case_form}_form"] for case_form in CASE_FORMS]
    if not any(candidate is form for candidate in shown):
        messages.error(request, problem or " ".join(error for errors in form.errors.values() for error in errors))
        return _back(order)
    return _order_page(request, order, context)


def _milestone(order: Order, ref: str) -> OrderMilestone:
    milestone = next((m for m in order.milestones.all() if m.ref == ref), None)
    if milestone is None:
        raise Http404("No such milestone")
    return milestone


@login_required
@require_POST
def order_deliver(request, public_id):
    order, actor = _participant(request, public_id)
    if not order.is_seller(request.user):
        raise PermissionDenied("only the seller marks an order delivered")
    form = DeliverForm(request.POST, request.FILES)
    if not form.is_valid():
        return _form_refused(request, order, "deliver", form)
    ref = form.cleaned_data["milestone"] or None
    if ref is not None:
        _milestone(order, ref)
    try:
        order_milestone_complete(
            order=order,
            ref=ref,
            actor=actor,
            evidence_text=form.cleaned_data["evidence_text"],
            evidence_link=form.cleaned_data["evidence_link"],
            evidence_file=form.cleaned_data.get("evidence_file"),
        )
    except ServiceError as error:
        return _refused(request, order, error)
    if ref is None:
        messages.success(request, "Marked delivered. The buyer is told and can now approve the payment.")
    else:
        messages.success(request, f"“{_milestone(order, ref).title}” marked delivered. The buyer is told.")
    return _back(order)


def _confirm_page(request, order: Order, **confirm):
    """The confirmation page of an action on `order` that cannot be undone (includes/confirm.html)."""
    mine = "my-purchases" if order.is_buyer(request.user) else "my-sales"
    back = reverse("order-detail", args=[order.public_id])
    confirm.setdefault("back", back)
    confirm["crumbs"] = [
        ("My purchases" if mine == "my-purchases" else "My sales", reverse(mine)),
        (f"{order.title} ({order_reference(order.pk)})", back),
    ]
    return render(request, "includes/confirm.html", {"confirm": confirm})


def _net_words(payouts: list[int], escrow: Escrow | None) -> str:
    return f"${money_dollars(_seller_net_of(payouts, escrow)):,.2f} after the escrow and platform fees"


@login_required
@require_http_methods(["GET", "POST"])
def order_release_view(request, public_id):
    """GET: what releasing pays and to whom, to confirm; POST: approve and release."""
    order, actor = _participant(request, public_id)
    if not order.is_buyer(request.user):
        raise PermissionDenied("only the buyer approves and releases the payment")
    form = MilestoneForm(request.POST if request.method == "POST" else request.GET)
    ref = form.cleaned_data["milestone"] if form.is_valid() else ""
    if request.method == "GET":
        return _release_confirm(request, order, ref)
    try:
        if ref:
            milestone = _milestone(order, ref)
            order_milestone_release(order=order, ref=ref, actor=actor)
            messages.success(
                request,
                f"Approved “{milestone.title}”: ${money_dollars(milestone.amount):,.2f} is on its way to the seller.",
            )
        else:
            order_release(order=order, actor=actor)
            messages.success(request, "Thank you! You approved the delivery: the payment is on its way to the seller.")
    except ServiceError as error:
        return _refused(request, order, error)
    return _back(order)


def _release_confirm(request, order: Order, ref: str):
    escrow = _escrow_for(order)
    actions = _actions(order, request.user, _milestones_shown(order, escrow))
    seller = order.seller.display_name
    if ref:
        milestone = _milestone(order, ref)
        if milestone not in actions["release_milestones"]:
            messages.info(request, f"“{milestone.title}” cannot be approved now.")
            return _back(order)
        amount = milestone.amount
        payouts = [amount]
        heading = f"Approve “{milestone.title}” and release its payment?"
        hidden = [("milestone", milestone.ref)]
    else:
        if not actions["release"]:
            messages.info(request, "This order's payment cannot be released now.")
            return _back(order)
        # What is left in the escrow moves, not the order's price: milestones paid already are gone.
        unpaid = [m.amount for m in escrow.milestones.all() if not (m.released or m.resolved)] if escrow else []
        amount = sum(unpaid) if escrow is not None else order.amount
        payouts = unpaid if escrow is not None and escrow.is_multi else [amount]
        heading, hidden = "Approve the delivery and release the payment?", []
    dollars = f"${money_dollars(amount):,.2f}"
    return _confirm_page(
        request,
        order,
        heading=heading,
        summary=f"{dollars} goes from the escrow to {seller}.",
        rows=[("Released", dollars), ("Paid to", seller), (f"{seller} receives", _net_words(payouts, escrow))],
        warning="Once released, the payment cannot be taken back, and you can no longer open a dispute about it. "
        "Do this only once you have checked the work.",
        action=reverse("order-release", args=[order.public_id]),
        hidden=hidden,
        button=f"Yes, release {dollars} to {seller}",
        style="success",
        back_label="Not yet",
    )


@login_required
@require_POST
def order_refund_view(request, public_id):
    """The seller refunds: the reason is checked, then confirmed on a page of its own (`confirmed`)."""
    order, actor = _participant(request, public_id)
    if not order.is_seller(request.user):
        raise PermissionDenied("only the seller refunds an order")
    form = ReasonForm(request.POST, required=True)
    if not form.is_valid():
        return _form_refused(request, order, "refund", form, "Please say why you are refunding the order.")
    fees = order_refund_fees_of(order)  # before the refund empties the escrow
    if request.POST.get("confirmed") != "yes":
        buyer = order.buyer.display_name
        return _confirm_page(
            request,
            order,
            heading="Refund the buyer?",
            summary=f"${fees.back:,.2f} goes back to {buyer}; you are not paid for this order.",
            rows=[
                ("In escrow", f"${fees.amount:,.2f}"),
                ("Fees the escrow keeps", f"${fees.fees:,.2f}"),
                (f"{buyer} gets back", f"${fees.back:,.2f}"),
                ("Your reason", form.cleaned_data["reason"]),
            ],
            warning="A refund cannot be undone: the order closes and the buyer sees your reason.",
            action=reverse("order-refund", args=[order.public_id]),
            hidden=[("reason", form.cleaned_data["reason"]), ("confirmed", "yes")],
            button=f"Yes, refund ${fees.back:,.2f} to {buyer}",
            style="danger",
            back_label="Keep the order",
        )
    try:
        order_refund(order=order, actor=actor, reason=form.cleaned_data["reason"])
    except ServiceError as error:
        return _refused(request, order, error)
    messages.success(
        request,
        f"Refund started: ${fees.back:,.2f} of ${fees.amount:,.2f} goes back to the buyer; "
        f"the escrow keeps ${fees.fees:,.2f} in fees (Trustless Work and OfferHub).",
    )
    return _back(order)


@login_required
@require_http_methods(["GET", "POST"])
def order_cancel_view(request, public_id):
    """GET: what canceling does, to confirm; POST: cancel."""
    order, actor = _participant(request, public_id)
    if request.method == "GET":
        if not _may(order, "cancel", actor):
            messages.info(request, "This order cannot be canceled now.")
            return _back(order)
        held = order.status == S.FUNDS_RESERVED  # ORDER_CREATED: nothing was put on hold yet
        dollars = f"${money_dollars(order.amount):,.2f}" if held else "Nothing (nothing is on hold)"
        if order.is_buyer(request.user):
            seller = order.seller.display_name
            if held:
                summary = f"The {dollars} on hold goes back to your available balance; {seller} is paid nothing."
            else:
                summary = f"Nothing is on hold from your balance yet: no money moves, and {seller} is paid nothing."
        elif held:
            summary = f"The {dollars} on hold goes back to {order.buyer.display_name}; you are paid nothing."
        else:
            summary = "Nothing is on hold for this order yet: no money moves, and you are paid nothing."
        return _confirm_page(
            request,
            order,
            heading="Cancel this order?",
            summary=summary,
            rows=[("Order", f"{order.title} ({order_reference(order.pk)})"), ("Back to the buyer", dollars)],
            warning="A canceled order cannot be reopened: to buy again, place a new order.",
            action=reverse("order-cancel", args=[order.public_id]),
            hidden=[],
            button="Yes, cancel the order",
            style="danger",
            back_label="Keep the order",
        )
    form = ReasonForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    held = order.status == S.FUNDS_RESERVED
    try:
        order_cancel(order=order, actor=actor, reason=reason)
    except ServiceError as error:
        return _refused(request, order, error)
    messages.success(
        request,
        "Order canceled. Nothing was paid; "
        + ("the hold on the buyer's balance is released." if held else "nothing was on hold."),
    )
    return _back(order)


@login_required
@require_POST
def order_retry_view(request, public_id):
    """Setting up the payment protection did not start (or failed): try again, same order, same hold."""
    order, actor = _participant(request, public_id)
    if not order.is_buyer(request.user):
        raise PermissionDenied("only the buyer retries the checkout")
    try:
        order_escrow_create(order=order, actor=actor)
    except ServiceError as error:
        return _refused(request, order, error)
    messages.success(request, "We are setting up the payment protection again.")
    return _back(order)


# --- My purchases, my sales --------------------------------------------------------------------------


def _order_list(request, *, mine: str):
    side = {"purchases": ("buyer", "seller"), "sales": ("seller", "buyer")}[mine]
    orders = Order.objects.filter(**{side[0]: request.user}).select_related(side[1]).order_by("-created_at", "-pk")
    page = Paginator(orders, ORDERS_PER_PAGE).get_page(request.GET.get("page"))
    # A sale's net at its escrow's own fee percent (the one it pays out at): one read for the page.
    fee_percents = (
        dict(
            Escrow.objects.filter(engagement_id__in=[order.public_id for order in page.object_list]).values_list(
                "engagement_id", "platform_fee_percent"
            )
        )
        if mine == "sales"
        else {}
    )
    rows = [
        {
            "order": order,
            "badge": order_badge(order),
            "other": getattr(order, side[1]),
            "amount": money_dollars(order.amount),
            "net": money_dollars(
                seller_net(amount=order.amount, platform_fee_percent=fee_percents.get(order.public_id))
            )
            if mine == "sales"
            else None,
        }
        for order in page.object_list
    ]
    return render(request, f"marketplace/orders_{mine}.html", {"page": page, "rows": rows, "mine": mine})


@login_required
def my_purchases(request):
    return _order_list(request, mine="purchases")


@login_required
def my_sales(request):
    return _order_list(request, mine="sales")
