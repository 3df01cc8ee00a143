"""The dispute case: opening it freezes the order and its escrow (on chain); support assigns
it and resolves it, and the resolution is paid on chain by the existing escrow resolution.

The decision is final when `dispute_resolve` commits (the dispute is RESOLVED, a second
resolve is refused); the payout is an escrow step the runner submits once, and the order
follows it (marketplace.orders): RELEASE_REQUESTED/REFUND_REQUESTED, or DISPUTED for a
split, then RELEASED/REFUNDED and CLOSED when the chain confirms. A resolution the chain
refuses for good puts the case back UNDER_REVIEW and the order back DISPUTED, so support
can decide again.
"""

from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from disputes.models import Dispute
from escrow.models import Escrow, EscrowStep
from escrow.services import step_failed
from marketplace.models import Order
from marketplace.orders import OrderActor, order_dispute, order_dispute_resolve, order_escrow_unpaid
from offerhub.errors import ServiceError
from offerhub.ids import new_dispute_id
from offerhub.money import money_from_stroops
from offerhub.services import audit_record, event_publish
from offerhub.timefmt import iso_timestamp

Decision = Dispute.Decision
RESOLUTION_STEPS = (EscrowStep.Action.RESOLVE, EscrowStep.Action.RESOLVE_MILESTONE)
ESCROW = OrderActor("SYSTEM", "escrow")


@transaction.atomic
def dispute_open(
    *, order, actor: OrderActor, opened_by: str, reason: str, evidence: list[str] | None = None
) -> Dispute:
    """`opened_by` BUYER or SELLER; `reason` one of Dispute.Reason. One dispute per order."""
    if Dispute.objects.filter(order=order).exists():
        raise ServiceError("DISPUTE_ALREADY_OPEN", "this order already has a dispute")
    public_id = new_dispute_id()
    order = order_dispute(order=order, actor=actor, opened_by=opened_by.lower(), reason=reason, dispute_id=public_id)
    dispute = Dispute.objects.create(
        public_id=public_id, order=order, opened_by=opened_by.upper(), reason=reason, evidence=evidence or None
    )
    audit_record(
        action="dispute.opened",
        resource_type="Dispute",
        resource_id=dispute.public_id,
        actor_type=actor.type,
        actor_id=actor.id,
        payload_after={"orderId": order.public_id, "openedBy": dispute.opened_by, "reason": reason},
        user_id=order.buyer.public_id,
        marketplace_id=order.marketplace_id,
    )
    event_publish(
        type="dispute.opened",
        aggregate_type="Dispute",
        aggregate_id=dispute.public_id,
        payload={
            "disputeId": dispute.public_id,
            "orderId": order.public_id,
            "openedBy": dispute.opened_by,
            "reason": reason,
            "evidence": evidence or None,
            "openedAt": iso_timestamp(dispute.created_at or timezone.now()),
        },
        user_id=order.buyer.public_id,
        marketplace_id=order.marketplace_id,
    )
    return dispute


def _locked(dispute: Dispute) -> Dispute:
    return Dispute.objects.select_for_update(of=("self",)).select_related("order__buyer").get(pk=dispute.pk)


def _invalid_state(dispute: Dispute, allowed: str, words: str) -> ServiceError:
    return ServiceError(
        "INVALID_STATE",
        f"the dispute is {dispute.status}; only a dispute {allowed} can be {words}",
        details={"currentState": dispute.status, "allowedStates": [allowed]},
    )


def _support_only(actor: OrderActor) -> None:
    if not actor.is_support:
        raise ServiceError("FORBIDDEN", "only support handles a dispute")


def _record(dispute: Dispute, *, action: str, actor: OrderActor, before: str, **after) -> None:
    order = dispute.order
    audit_record(
        action=action,
        resource_type="Dispute",
        resource_id=dispute.public_id,
        actor_type=actor.type,
        actor_id=actor.id,
        payload_before={"status": before},
        payload_after={"status": dispute.status, **after},
        user_id=order.buyer.public_id,
        marketplace_id=order.marketplace_id,
    )


def _publish(dispute: Dispute, event_type: str, **payload) -> None:
    event_publish(
        type=event_type,
        aggregate_type="Dispute",
        aggregate_id=dispute.public_id,
        payload={"disputeId": dispute.public_id, "orderId": dispute.order.public_id, **payload},
        user_id=dispute.order.buyer.public_id,
        marketplace_id=dispute.order.marketplace_id,
    )


@transaction.atomic
def dispute_assign(*, dispute: Dispute, agent: str, actor: OrderActor) -> Dispute:
    """Support takes the case: OPEN → UNDER_REVIEW, `agent` (who reviews it) recorded."""
    _support_only(actor)
    dispute = _locked(dispute)
    if dispute.status != Dispute.Status.OPEN:
        raise _invalid_state(dispute, Dispute.Status.OPEN, "assigned")
    before = dispute.status
    dispute.assign(agent=agent)
    dispute.save()
    _record(dispute, action="dispute.under_review", actor=actor, before=before, assignedTo=dispute.assigned_to)
    _publish(
        dispute, "dispute.under_review", reviewedBy=dispute.assigned_to, reviewStartedAt=iso_timestamp(timezone.now())
    )
    return dispute


def _shares(*, decision: str, release_amount: int | None, refund_amount: int | None, unpaid: int) -> tuple[int, int]:
    """(to the seller, to the buyer) in stroops: everything the escrow still holds, as decided."""
    if decision != Decision.SPLIT:
        if release_amount is not None or refund_amount is not None:
            raise ServiceError(
                "INVALID_REQUEST", f"{decision} takes no amounts; amounts are for a SPLIT", field="releaseAmount"
            )
        return (unpaid, 0) if decision == Decision.FULL_RELEASE else (0, unpaid)
    details = {"expectedTotal": money_from_stroops(unpaid)}
    if release_amount is None or refund_amount is None:
        raise ServiceError(
            "INVALID_AMOUNT",
            "a SPLIT needs both releaseAmount and refundAmount",
            field="releaseAmount",
            details=details,
        )
    if release_amount <= 0 or refund_amount <= 0:
        raise ServiceError(
            "INVALID_AMOUNT",
            "each side of a SPLIT gets more than zero (all to one side is FULL_RELEASE or FULL_REFUND)",
            field="releaseAmount",
            details=details,
        )
    if release_amount + refund_amount != unpaid:
        raise ServiceError(
            "INVALID_AMOUNT",
            f"releaseAmount and refundAmount must add up to {money_from_stroops(unpaid)}, what the escrow holds",
            field="releaseAmount",
            details=details,
        )
    return release_amount, refund_amount


@transaction.atomic
def dispute_resolve(
    *,
    dispute: Dispute,
    decision: str,
    release_amount: int | None,
    refund_amount: int | None,
    note: str,
    actor: OrderActor,
) -> Dispute:
    """Support decides (UNDER_REVIEW → RESOLVED) and the escrow pays it: `release_amount` to
    the seller and `refund_amount` to the buyer (stroops, SPLIT only; a full decision pays
    everything the escrow still holds to one side). Each payout is net of the contract's fees."""
    _support_only(actor)
    dispute = _locked(dispute)
    if dispute.status != Dispute.Status.UNDER_REVIEW:
        raise _invalid_state(dispute, Dispute.Status.UNDER_REVIEW, "resolved")
    order = Order.objects.get(pk=dispute.order_id)
    seller_amount, buyer_amount = _shares(
        decision=decision,
        release_amount=release_amount,
        refund_amount=refund_amount,
        unpaid=order_escrow_unpaid(order),
    )
    before = dispute.status
    dispute.resolve(decision=decision, release_amount=seller_amount, refund_amount=buyer_amount, note=note)
    dispute.save()
    sellers, buyers = money_from_stroops(seller_amount), money_from_stroops(buyer_amount)
    _record(
        dispute, action="dispute.resolved", actor=actor, before=before, decision=decision, seller=sellers, buyer=buyers
    )
    _publish(
        dispute,
        "dispute.resolved",
        decision=decision,
        decisionNote=note or None,
        resolvedBy=actor.id,
        resolvedAt=iso_timestamp(dispute.resolved_at),
        buyerAmount=buyers,
        sellerAmount=sellers,
    )
    order_dispute_resolve(order=order, actor=actor, seller_amount=seller_amount, buyer_amount=buyer_amount)
    return dispute


@receiver(step_failed, dispatch_uid="disputes-resolution-failed")
def _resolution_refused(sender, step: EscrowStep, escrow: Escrow, **kwargs) -> None:
    """The chain refused the resolution for good (inside the failing step's transaction): the
    money is still in the escrow, so the case goes back to support to decide again."""
    if step.action not in RESOLUTION_STEPS:
        return
    dispute = (
        Dispute.objects.select_for_update(of=("self",))
        .select_related("order__buyer")
        .filter(order__public_id=escrow.engagement_id, status=Dispute.Status.RESOLVED)
        .first()
    )
    if dispute is None:
        return
    dispute.reopen()
    dispute.save()
    actor = OrderActor("SYSTEM", "escrow")
    _record(
        dispute, action="dispute.resolution_refused", actor=actor, before=Dispute.Status.RESOLVED, code=step.error_code
    )
