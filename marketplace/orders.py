"""Order services: the API and the web pages both call these.

Every transition locks the order row, asks django-fsm whether this actor may take it
now (`has_transition_perm`, `can_proceed`), and writes the audit record and the event
in the same transaction. Steps that talk to Trustless Work are queued on the escrow
(`escrow.services`) and finish in the background; the escrow's `step_settled` and
`step_failed` signals move the order on, inside the transaction that settles the step.
"""

import functools
import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, prefetch_related_objects
from django.db.models.fields.files import FieldFile
from django.dispatch import receiver
from django.utils import timezone
from django_fsm import can_proceed, has_transition_perm

from escrow.models import Escrow, EscrowStep
from escrow.services import (
    escrow_dispute,
    escrow_fees,
    escrow_fund,
    escrow_locked_for,
    escrow_milestone_mark,
    escrow_open,
    escrow_refund,
    escrow_release,
    escrow_resolve,
    step_failed,
    step_settled,
)
from marketplace.models import Order, OrderMilestone, User
from offerhub.errors import ServiceError
from offerhub.files import file_delete_on_rollback, private_storage
from offerhub.ids import random_alnum
from offerhub.models import AuditLog
from offerhub.money import money_from_stroops, money_to_stroops
from offerhub.services import audit_record, event_publish, outbox_batched, outbox_save, transaction_joined
from offerhub.timefmt import iso_timestamp
from payments.balances import Actor, balance_cancel_reservation, balance_reserve, balance_snapshot
from payments.models import Hold

logger = logging.getLogger(__name__)
S = Order.Status
Action = EscrowStep.Action
MAX_MILESTONES = 50


@dataclass(frozen=True)
class OrderActor:
    """Who acts on an order: a signed-in user, support staff, an API key, or the platform."""

    type: str  # AuditLog.ActorType
    id: str
    user: User | None = None
    is_support: bool = False

    @property
    def is_system(self) -> bool:
        return self.type in ("SYSTEM", "API_KEY")

    @classmethod
    def for_user(cls, user: User) -> "OrderActor":
        if user.is_support:
            return cls("SUPPORT", user.public_id, user, is_support=True)
        return cls("USER", user.public_id, user)

    @classmethod
    def for_api_key(cls, principal) -> "OrderActor":
        return cls("API_KEY", principal.key_id, None, is_support=principal.has_scope("support"))  # `*` too

    @property
    def as_balance_actor(self) -> Actor:
        return Actor(self.type, self.id)


SYSTEM = OrderActor("SYSTEM", "orders")
# Finishes a dispute's split once the chain pays it: support decided it, the platform records it.
DISPUTE_RESOLVER = OrderActor("SYSTEM", "disputes", is_support=True)


# --- Reading helpers ----------------------------------------------------------------------


def order_escrow(order: Order) -> Escrow | None:
    return Escrow.objects.filter(engagement_id=order.public_id).first()


def seller_net(*, amount: int, platform_fee_percent: Decimal | None = None) -> int:
    """What the seller receives of `amount` once the escrow pays out (Trustless Work + platform
    fees): at the escrow's own fee percent when there is one (the contract pays at the percent
    it was deployed with), else at today's setting (an order not yet in escrow)."""
    if platform_fee_percent is None:
        platform_fee_percent = settings.OFFERHUB_PLATFORM_FEE_PERCENT
    return escrow_fees(amount=amount, platform_fee_percent=platform_fee_percent).net


# --- Transitions ----------------------------------------------------------------------------


def _invalid_state(message: str, current: str, allowed: list[str], **details) -> ServiceError:
    """INVALID_STATE with what API.md §1.7 promises in its details: where it is, where it must be."""
    return ServiceError(
        "INVALID_STATE", message, details={"currentState": current, "allowedStates": allowed, **details}
    )


def _order_transaction(func):
    """The service's transaction (a savepoint inside the caller's), its audit rows and events
    inserted together when it ends (offerhub.services.outbox_batched)."""

    @functools.wraps(func)
    def run(*args, **kwargs):
        with transaction.atomic(), outbox_batched():
            return func(*args, **kwargs)

    return run


def _with_milestone_flag(orders):
    """Whether each order has milestones, read along (an order's milestones are written with it,
    never later): a single-release order's services then skip reading them."""
    return orders.annotate(has_milestones=Exists(OrderMilestone.objects.filter(order=OuterRef("pk"))))


def _milestones_known_empty(order: Order) -> bool:
    return getattr(order, "has_milestones", True) is False


def _locked(order: Order) -> Order:
    locked = Order.objects.select_for_update(of=("self",)).select_related("buyer", "seller")
    return _with_milestone_flag(locked).get(pk=order.pk)


def _take(order: Order, name: str, actor: OrderActor, *, save: bool = True, **kwargs) -> None:
    """Take transition `name` for `actor` or refuse with the API's codes. `save=False` when
    another transition follows at once and saves the order for both."""
    method = getattr(order, name)
    words = name.replace("_", " ")
    if not can_proceed(method):  # the state, then the transition's conditions
        raise _invalid_state(
            f"the order is {order.status}; it cannot {words} now",
            order.status,
            sorted(method._django_fsm.transitions),
        )
    if not has_transition_perm(method, actor):
        raise ServiceError("FORBIDDEN", f"you may not {words} this order")
    before = order.status
    method(**kwargs)
    if save:
        outbox_save(order)  # with the audit rows and events: the order's row is written last
    audit_record(
        action=f"order.{name}",
        resource_type="Order",
        resource_id=order.public_id,
        actor_type=actor.type,
        actor_id=actor.id,
        payload_before={"status": before},
        payload_after={"status": order.status, **{k: str(v) for k, v in kwargs.items()}},
        user_id=order.buyer.public_id,
        marketplace_id=order.marketplace_id,
    )


def _event(order: Order, event_type: str, **payload) -> None:
    event_publish(
        type=event_type,
        aggregate_type="Order",
        aggregate_id=order.public_id,
        payload={"orderId": order.public_id, **payload},
        user_id=order.buyer.public_id,
        marketplace_id=order.marketplace_id,
    )


def _milestones_cached_empty(order: Order) -> None:
    """What prefetch_related_objects(order, "milestones") leaves for an order without any."""
    milestones = order.milestones.all()
    milestones._result_cache, milestones._prefetch_done = [], True
    order._prefetched_objects_cache = {**getattr(order, "_prefetched_objects_cache", {}), "milestones": milestones}


# --- Creating ---------------------------------------------------------------------------------


def _validated_milestones(milestones: list[dict], amount: int) -> list[dict]:
    if not milestones:
        return []
    if len(milestones) > MAX_MILESTONES:
        raise ServiceError("INVALID_REQUEST", f"an order has at most {MAX_MILESTONES} milestones", field="milestones")
    refs = [m["ref"] for m in milestones]
    if len(set(refs)) != len(refs):
        raise ServiceError("INVALID_REQUEST", "milestone refs must be unique within the order", field="milestones")
    if any(m["amount"] <= 0 for m in milestones):
        raise ServiceError("INVALID_AMOUNT", "every milestone amount must be greater than zero", field="milestones")
    if sum(m["amount"] for m in milestones) != amount:
        raise ServiceError("INVALID_AMOUNT", "milestone amounts must add up to the order amount", field="milestones")
    return milestones


def order_amount_check(amount: int) -> None:
    limits = settings.OFFERHUB_LIMITS["order"]
    low, high = money_to_stroops(Decimal(limits["min"])), money_to_stroops(Decimal(limits["max"]))
    if not low <= amount <= high:
        raise ServiceError(
            "INVALID_AMOUNT", f"the amount must be between {limits['min']} and {limits['max']} USD", field="amount"
        )


def order_create(
    *,
    buyer: User,
    seller: User,
    amount: int,
    title: str,
    actor: OrderActor,
    description: str = "",
    milestones: list[dict] | None = None,
    client_order_ref: str = "",
    metadata: dict | None = None,
    listing=None,
    checkout_token: str = "",
    marketplace_id: str = "",
    autopilot: bool = False,
) -> tuple[Order, bool]:
    """(order, created). The same `client_order_ref` with the same terms, or the same
    checkout form submitted twice, returns the first order instead of a second one."""
    if buyer.pk == seller.pk:
        raise ServiceError("INVALID_REQUEST", "the buyer and the seller must be different users", field="seller_id")
    if not title or len(title) > 100:
        raise ServiceError("VALIDATION_ERROR", "title is required, at most 100 characters", field="title")
    order_amount_check(amount)
    milestones = _validated_milestones(milestones or [], amount)
    existing = _existing_order(buyer, client_order_ref, checkout_token, marketplace_id)
    if existing is not None:
        return _same_terms(existing, buyer, seller, amount), False
    try:
        with transaction.atomic(), outbox_batched():
            order = Order.objects.create(
                buyer=buyer,
                seller=seller,
                amount=amount,
                title=title,
                description=description,
                metadata=metadata,
                client_order_ref=client_order_ref,
                checkout_token=checkout_token,
                listing=listing,
                marketplace_id=marketplace_id,
                autopilot=autopilot,
            )
            OrderMilestone.objects.bulk_create(
                OrderMilestone(order=order, position=i, ref=m["ref"], title=m["title"][:255], amount=m["amount"])
                for i, m in enumerate(milestones)
            )
            audit_record(
                action="order.created",
                resource_type="Order",
                resource_id=order.public_id,
                actor_type=actor.type,
                actor_id=actor.id,
                payload_after={"status": order.status, "amount": money_from_stroops(amount)},
                user_id=buyer.public_id,
                marketplace_id=marketplace_id,
            )
            _event(
                order,
                "order.created",
                buyerId=buyer.public_id,
                sellerId=seller.public_id,
                amount=money_from_stroops(amount),
                currency="USD",
                title=title,
                description=description or None,
                clientOrderRef=client_order_ref or None,
            )
    except IntegrityError:  # the same reference or checkout committed meanwhile
        existing = _existing_order(buyer, client_order_ref, checkout_token, marketplace_id)
        if existing is None:
            raise
        return _same_terms(existing, buyer, seller, amount), False
    return order, True


def _existing_order(buyer, client_order_ref: str, checkout_token: str, marketplace_id: str) -> Order | None:
    if client_order_ref:
        return Order.objects.filter(marketplace_id=marketplace_id, client_order_ref=client_order_ref).first()
    if checkout_token:
        return Order.objects.filter(buyer=buyer, checkout_token=checkout_token).first()
    return None


def _same_terms(order: Order, buyer, seller, amount: int) -> Order:
    if (order.buyer_id, order.seller_id, order.amount) != (buyer.pk, seller.pk, amount):
        raise ServiceError(
            "ORDER_REF_CONFLICT",
            f"client_order_ref {order.client_order_ref!r} is already used by {order.public_id} with other terms",
            field="client_order_ref",
        )
    return order


# --- Money steps ----------------------------------------------------------------------------


@_order_transaction
def order_reserve(*, order: Order, actor: OrderActor, amount: int | None = None) -> Order:
    """Hold the buyer's money for the order (available → held)."""
    order = _locked(order)
    if amount is not None and amount != order.amount:
        raise ServiceError("RESERVE_MISMATCH_AMOUNT", "the amount must equal the order amount", field="amount")
    _take(order, "reserve", actor)
    after = balance_reserve(
        user=order.buyer,
        reference=order.public_id,
        amount=order.amount,
        actor=actor.as_balance_actor,
        owner=Hold.Owner.ORDER,  # the order's own: the balance endpoints cannot void or move it
    ).after
    _event(
        order,
        "order.funds_reserved",
        buyerId=order.buyer.public_id,
        amount=money_from_stroops(order.amount),
        currency="USD",
        reservedBalance=money_from_stroops(after.reserved),
        availableBalance=money_from_stroops(after.available),
    )
    return order


@_order_transaction
def order_cancel(*, order: Order, actor: OrderActor, reason: str = "") -> Order:
    """Before funding only: the hold (if any) goes back to the buyer's available balance."""
    order = _locked(order)
    held = order.status == S.FUNDS_RESERVED
    _take(order, "cancel", actor, reason=reason)
    if held:
        balance_cancel_reservation(
            user=order.buyer,
            reference=order.public_id,
            amount=order.amount,
            actor=actor.as_balance_actor,
            owner=Hold.Owner.ORDER,
        )
    _event(
        order,
        "order.canceled",
        buyerId=order.buyer.public_id,
        canceledBy=actor.type.lower(),
        reason=reason or None,
        canceledAt=iso_timestamp(order.closed_at),
        fundsReleased=held,
    )
    return order


@_order_transaction
def order_escrow_create(*, order: Order, actor: OrderActor) -> Order:
    """Deploy the order's escrow (in the background). Asking again while the deploy is
    pending or after it failed resumes the same escrow record, never a second contract."""
    order = _locked(order)
    if order.status != S.ESCROW_CREATING:
        # The escrow is looked up only when the transition is refused (to say why): when it is
        # allowed, escrow_open refuses a deployed escrow itself, and its error undoes the step.
        if not (can_proceed(order.escrow_create) and has_transition_perm(order.escrow_create, actor)):
            escrow = order_escrow(order)
            if escrow is not None and escrow.status != Escrow.Status.CREATING:
                raise ServiceError("ESCROW_ALREADY_EXISTS", "the order's escrow is already deployed")
        _take(order, "escrow_create", actor)
    milestones = [] if _milestones_known_empty(order) else order.milestones.all()
    milestones = [{"ref": m.ref, "title": m.title, "amount": m.amount} for m in milestones]
    escrow = escrow_open(
        engagement_id=order.public_id,
        buyer=order.buyer,
        seller=order.seller,
        amount=order.amount,
        title=order.title,
        description=order.description,
        milestones=milestones,
        hold_reference=order.public_id,
        actor=(actor.type, actor.id),
    )
    _event(order, "order.escrow_creating", escrowId=escrow.public_id, amount=money_from_stroops(order.amount))
    return order


@_order_transaction
def order_escrow_fund(*, order: Order, actor: OrderActor) -> Order:
    """Move the held money into the contract. A failure leaves the order ESCROW_FUNDING
    with the hold intact, so funding can be asked for again."""
    order = _locked(order)
    escrow = escrow_locked_for(engagement_id=order.public_id)  # escrow_fund takes it as it is
    if order.status in (S.ESCROW_FUNDED, S.IN_PROGRESS) or (escrow and escrow.funded_at):
        raise ServiceError("ESCROW_ALREADY_FUNDED", "the order's escrow is already funded")
    if order.status != S.ESCROW_FUNDING or escrow is None:
        raise ServiceError("ESCROW_NOT_READY", f"the order is {order.status}; its escrow is not deployed yet")
    _fund(order, escrow, actor)
    return order


def _fund(order: Order, escrow: Escrow, actor: OrderActor) -> None:
    escrow = escrow_fund(escrow=escrow, actor=(actor.type, actor.id))
    _event(
        order,
        "escrow.funding_started",
        escrowId=escrow.public_id,
        trustlessContractId=escrow.contract_id,
        amount=money_from_stroops(order.amount),
    )


# --- Work and payout ----------------------------------------------------------------------------


def _in_progress(order: Order) -> None:
    if order.status != S.IN_PROGRESS:
        raise _invalid_state(f"the order is {order.status}, not IN_PROGRESS", order.status, [S.IN_PROGRESS])


def _escrow_of(order: Order) -> Escrow:
    """The order's escrow, locked (the escrow services it is handed to do not lock it again)."""
    escrow = escrow_locked_for(engagement_id=order.public_id)
    if escrow is None:
        raise ServiceError("ESCROW_NOT_READY", "the order has no escrow")
    return escrow


@_order_transaction
def order_milestone_complete(
    *,
    order: Order,
    ref: str | None,
    actor: OrderActor,
    evidence_text: str = "",
    evidence_link: str = "",
    evidence_file=None,
) -> OrderMilestone | None:
    """The seller delivers a milestone (or, for an order without milestones, the whole
    order: `ref` None). The mark and its evidence are recorded on the contract too."""
    order = _locked(order)
    if not (order.is_seller(actor.user) or actor.is_support or actor.is_system):
        raise ServiceError("FORBIDDEN", "only the seller marks work delivered")
    _in_progress(order)
    escrow = _escrow_of(order)
    milestones = []  # one read, for every check below (none when the order has none)
    if not _milestones_known_empty(order):
        milestones = list(order.milestones.select_for_update().order_by("position"))
    milestone, delivery_file = None, ""
    if ref is not None:
        milestone = next((m for m in milestones if m.ref == ref), None)
        if milestone is None:
            raise ServiceError("MILESTONE_NOT_FOUND", f"the order has no milestone {ref!r}")
        if milestone.status != OrderMilestone.Status.OPEN:
            raise _invalid_state(
                f"milestone {ref!r} is already {milestone.status}", milestone.status, [OrderMilestone.Status.OPEN]
            )
        milestone.status, milestone.completed_at = OrderMilestone.Status.COMPLETED, timezone.now()
        milestone.evidence_text, milestone.evidence_link = evidence_text, evidence_link
        index = milestone.position
    elif milestones:
        raise ServiceError("MILESTONE_NOT_FOUND", "say which milestone was delivered")
    else:
        if order.delivered_at is not None:
            raise ServiceError("INVALID_STATE", "the order is already marked delivered")
        index = 0
    evidence = " ".join(part for part in (evidence_link, evidence_text) if part)[:500]
    escrow_milestone_mark(escrow=escrow, index=index, evidence=evidence, actor=(actor.type, actor.id))
    # The file is stored once the contract refused nothing, and deleted again if the delivery's
    # transaction rolls back after all, even at its very end (the order's deferred write, COMMIT):
    # a delivery rolled back leaves no private file behind.
    if milestone is not None:
        if evidence_file is not None:
            milestone.evidence_file.save(evidence_file.name, evidence_file, save=False)
            file_delete_on_rollback(storage=milestone.evidence_file.storage, name=milestone.evidence_file.name)
        milestone.save()
    elif evidence_file is not None:
        delivery_file = _delivery_file_save(order, evidence_file)
    delivered = all(m.status != OrderMilestone.Status.OPEN for m in milestones)  # as all_milestones_delivered
    if delivered and order.delivered_at is None:
        order.delivered_at = timezone.now()
        outbox_save(order, ("delivered_at", "updated_at"))
        _event(order, "order.delivered", deliveredAt=iso_timestamp(order.delivered_at))  # the buyer is e-mailed
    audit_record(
        action="order.delivered" if milestone is None else "order.milestone_completed",
        resource_type="Order",
        resource_id=order.public_id,
        actor_type=actor.type,
        actor_id=actor.id,
        payload_after={
            "milestoneRef": ref,
            "evidence": evidence,
            **({"evidenceFile": delivery_file} if delivery_file else {}),
        },
        user_id=order.buyer.public_id,
    )
    return milestone


DELIVERY_FILE_ACTION = "order.delivered"


def _delivery_file_save(order: Order, upload) -> str:
    """The file of an order without milestones (which has no milestone row to hold it): kept in the
    private storage under the order, its name recorded in the delivery's audit record (same
    transaction: a delivery rolled back leaves no record pointing at it)."""
    extension = upload.name.rsplit(".", 1)[-1].lower()[:10] if "." in (upload.name or "") else "bin"
    storage = private_storage()
    name = storage.save(f"orders/{order.public_id}/delivery/{random_alnum(16)}.{extension}", upload)
    file_delete_on_rollback(storage=storage, name=name)
    return name


def order_delivery_file(*, order: Order) -> FieldFile | None:
    """The file delivered with an order without milestones, or None (private: serve it through a
    view that checked who asks, offerhub.files.private_file_response)."""
    if order.delivered_at is None:
        return None
    record = (
        AuditLog.objects.filter(action=DELIVERY_FILE_ACTION, resource_type="Order", resource_id=order.public_id)
        .order_by("-id")
        .values_list("payload_after", flat=True)
        .first()
    )
    name = (record or {}).get("evidenceFile")
    if not name:
        return None
    return FieldFile(None, OrderMilestone._meta.get_field("evidence_file"), name)


@_order_transaction
def order_milestone_release(*, order: Order, ref: str, actor: OrderActor, undelivered_ok: bool = False) -> Order:
    """Approve and pay one delivered milestone (multi-release escrows). `undelivered_ok`:
    support's manual release (marketplace.manual) pays a milestone not delivered yet too."""
    order = _locked(order)
    if not (order.is_buyer(actor.user) or actor.is_support or actor.is_system):
        raise ServiceError("FORBIDDEN", "only the buyer (or support) releases a milestone")
    if order.status == S.DISPUTED:
        raise ServiceError("DISPUTE_ALREADY_OPEN", "the order is in dispute")
    _in_progress(order)
    milestone = order.milestones.filter(ref=ref).first()
    if milestone is None:
        raise ServiceError("MILESTONE_NOT_FOUND", f"the order has no milestone {ref!r}")
    support_override = undelivered_ok and actor.is_support and milestone.status == OrderMilestone.Status.OPEN
    if milestone.status != OrderMilestone.Status.COMPLETED and not support_override:
        raise _invalid_state(
            f"milestone {ref!r} is {milestone.status}, not COMPLETED",
            milestone.status,
            [OrderMilestone.Status.COMPLETED],
        )
    escrow = _escrow_of(order)
    if not escrow.is_multi:
        raise _invalid_state(
            "this order's escrow pays out as a whole: release the order", escrow.type, [Escrow.Type.MULTI]
        )
    escrow_release(escrow=escrow, index=milestone.position, actor=(actor.type, actor.id))
    return order


@_order_transaction
def order_release(
    *, order: Order, actor: OrderActor, reason: str = "", requested_by: str = "", undelivered_ok: bool = False
) -> Order:
    """The buyer approves: everything still in escrow goes to the seller. `requested_by`:
    who asked, as the API caller names them (API.md §9); the actor by default.
    `undelivered_ok`: support's manual release of a stuck order (marketplace.manual) pays
    out milestones not delivered yet too."""
    order = _locked(order)
    if order.status == S.DISPUTED:
        raise ServiceError("DISPUTE_ALREADY_OPEN", "the order is in dispute; support resolves it")
    _in_progress(order)
    # Loaded once into the order's cache: the transition's condition (all_milestones_delivered)
    # reads them too, twice (can_proceed, then the transition itself).
    if _milestones_known_empty(order):
        _milestones_cached_empty(order)
    else:
        prefetch_related_objects([order], "milestones")
    open_refs = [m.ref for m in order.milestones.all() if m.status == OrderMilestone.Status.OPEN]
    support_override = undelivered_ok and actor.is_support
    if open_refs and not support_override:
        raise _invalid_state(
            f"milestones not delivered yet: {', '.join(open_refs)}", order.status, [S.IN_PROGRESS], open=open_refs
        )
    escrow = _escrow_of(order)
    _take(order, "release_undelivered" if open_refs else "request_release", actor)
    escrow_release(escrow=escrow, actor=(actor.type, actor.id))
    _event(
        order,
        "order.release_requested",
        requestedBy=requested_by or actor.id,
        requestedAt=iso_timestamp(timezone.now()),
        reason=reason or None,
    )
    return order


@_order_transaction
def order_refund(*, order: Order, actor: OrderActor, reason: str) -> Order:
    """The seller (or support) gives the money back: the escrow returns to the buyer."""
    order = _locked(order)
    if order.status == S.DISPUTED:
        raise ServiceError("DISPUTE_ALREADY_OPEN", "the order is in dispute; support resolves it")
    _in_progress(order)
    escrow = _escrow_of(order)
    _take(order, "request_refund", actor)
    escrow_refund(escrow=escrow, actor=(actor.type, actor.id))
    _event(
        order, "order.refund_requested", requestedBy=actor.id, requestedAt=iso_timestamp(timezone.now()), reason=reason
    )
    return order


@_order_transaction
def order_dispute(*, order: Order, actor: OrderActor, opened_by: str, reason: str, dispute_id: str = "") -> Order:
    """Freeze the order and its escrow (on chain) until support decides."""
    order = _locked(order)
    if order.status == S.DISPUTED:
        raise ServiceError("DISPUTE_ALREADY_OPEN", "a dispute is already open on this order")
    escrow = _escrow_of(order) if order.status == S.IN_PROGRESS else None
    _take(order, "dispute", actor)
    escrow_dispute(escrow=escrow, opened_by=opened_by, actor=(actor.type, actor.id))
    _event(
        order,
        "order.disputed",
        disputeId=dispute_id or None,
        openedBy=opened_by.upper(),
        reason=reason,
        openedAt=iso_timestamp(timezone.now()),
    )
    return order


@_order_transaction
def order_dispute_withdraw(*, order: Order, actor: OrderActor, disputed_at, dispute_id: str = "") -> Order:
    """The dispute was withdrawn: the order goes on where it was (IN_PROGRESS). Its escrow
    keeps the contract's dispute flag (Trustless Work v1 cannot clear it), so what it pays out
    later is paid by the platform as dispute resolver (escrow.services.escrow_release). The
    buyer's inspection window did not run while the order was frozen (since `disputed_at`)."""
    order = _locked(order)
    if order.status != S.DISPUTED:
        raise _invalid_state(f"the order is {order.status}, not DISPUTED", order.status, [S.DISPUTED])
    if order.delivered_at is not None:
        order.delivered_at += max(timezone.now() - disputed_at, timedelta(0))
    _take(order, "dispute_withdrawn", actor)
    _event(order, "order.dispute_withdrawn", disputeId=dispute_id or None, withdrawnAt=iso_timestamp(timezone.now()))
    return order


@_order_transaction
def order_dispute_resolve(
    *,
    order: Order,
    actor: OrderActor,
    seller_amount: int,
    buyer_amount: int,
    seller_by_index: dict[int, int] | None = None,
) -> Order:
    """Pay a disputed order's escrow out as support decided (the disputes app's `dispute_resolve`):
    all to the seller (→ RELEASE_REQUESTED), all to the buyer (→ REFUND_REQUESTED), or split
    (the order stays DISPUTED until the chain pays, then RELEASED → CLOSED)."""
    order = _locked(order)
    if order.status != S.DISPUTED:
        raise _invalid_state(f"the order is {order.status}, not DISPUTED", order.status, [S.DISPUTED])
    escrow = _escrow_of(order)
    now = iso_timestamp(timezone.now())
    if not buyer_amount:
        _take(order, "resolve_release", actor)
        _event(order, "order.release_requested", requestedBy=actor.id, requestedAt=now, reason="dispute resolution")
    elif not seller_amount:
        _take(order, "resolve_refund", actor)
        _event(order, "order.refund_requested", requestedBy=actor.id, requestedAt=now, reason="dispute resolution")
    elif not has_transition_perm(order.resolve_split, actor):
        raise ServiceError("FORBIDDEN", "only support resolves a dispute")
    escrow_resolve(
        escrow=escrow,
        seller_amount=seller_amount,
        buyer_amount=buyer_amount,
        seller_by_index=seller_by_index,
        actor=(actor.type, actor.id),
    )
    return order


def order_escrow_unpaid(order: Order) -> int:
    """What the order's escrow still holds for someone (stroops): a dispute's resolution pays exactly this."""
    escrow = order_escrow(order)
    if escrow is None:
        raise ServiceError("ESCROW_NOT_READY", "the order has no escrow")
    return sum(m.amount for m in escrow.milestones.all() if not (m.released or m.resolved))


# --- Checkout (web) -----------------------------------------------------------------------------


def order_checkout(*, buyer: User, listing, checkout_token: str) -> Order:
    """Create, hold the money and start the escrow; the rest runs in the background.
    Submitting the same checkout form twice returns the same order."""
    actor = OrderActor.for_user(buyer)
    milestones = [
        {"ref": f"m{m.position + 1}", "title": m.title, "amount": m.amount_cents * 100_000}
        for m in listing.milestones.all()
    ]
    with transaction.atomic():
        order, created = order_create(
            buyer=buyer,
            seller=listing.seller,
            amount=listing.price_cents * 100_000,
            title=listing.title[:100],
            description=listing.description[:500],
            milestones=milestones,
            listing=listing,
            checkout_token=checkout_token,
            autopilot=True,
            actor=actor,
        )
        if not created:
            return order
        order_reserve(order=order, actor=actor)
    try:
        order_escrow_create(order=order, actor=SYSTEM)
    except ServiceError as error:
        # Money is held and the order waits in FUNDS_RESERVED: the page offers to retry or cancel.
        logger.warning("order %s: escrow not started: %s", order.public_id, error.message)
    # A fresh read, not refresh_from_db(): django-fsm unprotects `status` class-wide while it
    # refreshes, which makes a concurrent refresh in another thread fail.
    return Order.objects.select_related("buyer", "seller").get(pk=order.pk)


# --- Following the escrow --------------------------------------------------------------------------


def _order_of(escrow: Escrow) -> Order | None:
    """The escrow's order, locked (None for an escrow opened without an order, by raw API use)."""
    locked = Order.objects.select_for_update(of=("self",)).select_related("buyer", "seller")  # the order only
    return _with_milestone_flag(locked).filter(public_id=escrow.engagement_id).first()


@receiver(step_settled, dispatch_uid="orders-step-settled")
def _escrow_step_settled(sender, step: EscrowStep, escrow: Escrow, **kwargs) -> None:
    # In the settling transaction (joined, no savepoint): its writes and its batched audit rows
    # and events are kept or dropped together, even were it ever sent outside one.
    with transaction_joined(), outbox_batched():
        _order_follow_settled(step, escrow)


# Settled calls an order follows whatever the escrow's state; after any other (an approval, a
# milestone's status, a dispute flag) it moves only once the escrow paid everything out.
FOLLOWED_ACTIONS = (Action.DEPLOY, Action.FUND, Action.RELEASE_MILESTONE, Action.RESOLVE_MILESTONE)


def _order_follow_settled(step: EscrowStep, escrow: Escrow) -> None:
    if step.action not in FOLLOWED_ACTIONS and escrow.status not in (Escrow.Status.RELEASED, Escrow.Status.REFUNDED):
        return  # nothing for the order to do: not locked, not read
    order = _order_of(escrow)
    if order is None:
        return
    if step.action == Action.DEPLOY and order.status == S.ESCROW_CREATING:
        _take(order, "escrow_deployed", SYSTEM)
        _event(
            order,
            "order.escrow_funding",
            escrowId=escrow.public_id,
            trustlessContractId=escrow.contract_id,
            amount=money_from_stroops(order.amount),
        )
        if order.autopilot:
            _fund(order, escrow, SYSTEM)
    elif step.action == Action.FUND and order.status == S.ESCROW_FUNDING:
        _take(order, "escrow_funded", SYSTEM, save=False)
        funded = {
            "escrowId": escrow.public_id,
            "trustlessContractId": escrow.contract_id,
            "amount": money_from_stroops(order.amount),
            "fundedAt": iso_timestamp(escrow.funded_at),
        }
        _event(order, "order.escrow_funded", **funded)
        _take(order, "start", SYSTEM)  # saves both transitions
        _event(order, "order.in_progress", escrowId=escrow.public_id)
    elif step.action == Action.RELEASE_MILESTONE or (
        # a milestone released after a withdrawn dispute, paid by the dispute resolver
        step.action == Action.RESOLVE_MILESTONE and order.status == S.IN_PROGRESS
    ):
        milestone = order.milestones.filter(position=step.milestone_index).first()
        if milestone is not None:
            milestone.status, milestone.released_at = OrderMilestone.Status.RELEASED, timezone.now()
            milestone.save(update_fields=["status", "released_at", "updated_at"])
    if escrow.status in (Escrow.Status.RELEASED, Escrow.Status.REFUNDED):
        _finish(order, escrow)


def _finish(order: Order, escrow: Escrow) -> None:
    """The escrow paid everything out: the order reaches RELEASED or REFUNDED, then CLOSED."""
    if order.status == S.CLOSED:
        return
    now = timezone.now()
    if escrow.status == Escrow.Status.RELEASED:
        split = order.status == S.DISPUTED
        # Not saved yet: "close" follows at once and saves the order for both transitions.
        if order.status == S.IN_PROGRESS:
            _take(order, "last_milestone_released", SYSTEM, save=False)
        elif order.status == S.RELEASE_REQUESTED:
            _take(order, "released", SYSTEM, save=False)
        elif split:  # a dispute's split, paid: each side's credit is its own balance.credited event
            _take(order, "resolve_split", DISPUTE_RESOLVER, save=False)
        else:
            return
        if not _milestones_known_empty(order):
            order.milestones.exclude(status=OrderMilestone.Status.RELEASED).update(
                status=OrderMilestone.Status.RELEASED, released_at=now
            )
        if not split:
            seller = balance_snapshot(user=order.seller)
            _event(
                order,
                "order.released",
                sellerId=order.seller.public_id,
                amount=money_from_stroops(order.amount),
                netAmount=money_from_stroops(
                    seller_net(amount=order.amount, platform_fee_percent=escrow.platform_fee_percent)
                ),
                currency="USD",
                releasedAt=iso_timestamp(now),
                newSellerBalance=money_from_stroops(seller.available),
            )
    else:
        if order.status != S.REFUND_REQUESTED:
            return
        _take(order, "refunded", SYSTEM, save=False)  # "close" saves it
        buyer = balance_snapshot(user=order.buyer)
        _event(
            order,
            "order.refunded",
            buyerId=order.buyer.public_id,
            amount=money_from_stroops(order.amount),
            currency="USD",
            refundedAt=iso_timestamp(now),
            newBuyerBalance=money_from_stroops(buyer.available),
        )
    _take(order, "close", SYSTEM)
    _event(order, "order.closed", finalStatus="CLOSED", closedAt=iso_timestamp(order.closed_at))


@receiver(step_failed, dispatch_uid="orders-step-failed")
def _escrow_step_failed(sender, step: EscrowStep, escrow: Escrow, **kwargs) -> None:
    with transaction_joined(), outbox_batched():
        _order_follow_failed(step, escrow)


def _order_follow_failed(step: EscrowStep, escrow: Escrow) -> None:
    order = _order_of(escrow)
    if order is None:
        return
    failure = {"escrowId": escrow.public_id, "errorCode": step.error_code, "reason": step.error_message}
    if step.action == Action.DEPLOY and order.status == S.ESCROW_CREATING:
        _take(order, "escrow_deploy_failed", SYSTEM)  # money still held; creating the escrow may be retried
        _event(order, "order.escrow_failed", **failure)
    elif order.status in (S.RELEASE_REQUESTED, S.REFUND_REQUESTED) and _resolving_dispute(order, escrow):
        _take(order, "resolution_rejected", SYSTEM)  # the money is still in the escrow; support decides again
        _event(order, "order.payout_rejected", **failure)
    elif order.status in (S.RELEASE_REQUESTED, S.REFUND_REQUESTED):  # the money is still in the escrow
        _take(order, "payout_rejected", SYSTEM)
        _event(order, "order.payout_rejected", **failure)
    logger.warning("order %s: escrow step %s failed: %s", order.public_id, step.key, step.error_code)


def _resolving_dispute(order: Order, escrow: Escrow) -> bool:
    """Whether the order's payout was a dispute's resolution (the disputes app's case, resolved)."""
    dispute = getattr(order, "dispute_record", None)  # the reverse one-to-one raises AttributeError if none
    return dispute is not None and dispute.status == "RESOLVED" and escrow.status == Escrow.Status.DISPUTED


# --- Automatic release ------------------------------------------------------------------------------


def orders_release_inspected(*, now=None, limit: int = 200) -> int:
    """Release orders delivered longer ago than the inspection window and neither approved
    nor disputed. Returns how many were asked to release."""
    now = now or timezone.now()
    window = timezone.timedelta(hours=settings.OFFERHUB_INSPECTION_WINDOW_HOURS)
    due = Order.objects.filter(status=S.IN_PROGRESS, delivered_at__lte=now - window).order_by("delivered_at")
    released = 0
    for order in due[:limit]:
        try:
            order_release(order=order, actor=SYSTEM, reason="inspection window elapsed")
            released += 1
        except ServiceError as error:
            logger.warning("order %s not auto-released: %s", order.public_id, error.message)
    return released
