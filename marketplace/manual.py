"""Manual settlement from the backoffice: support releases an order's escrow (as a whole or one
milestone) or refunds it outside a dispute, for stuck orders and customer-service cases.

The money moves through the order services (`order_release`, `order_milestone_release`,
`order_refund`) with the staff user as support actor; this module adds what support needs
around them: a preview of who receives what net of the escrow's fees, the permission check,
the required reason and one audit row naming the staff user, the reason and which milestones
were paid before they were delivered.
"""

from dataclasses import dataclass

from django.db import models, transaction

from escrow.models import Escrow, EscrowStep
from escrow.services import Fees, escrow_fees
from marketplace.models import Order, OrderMilestone, User
from marketplace.orders import OrderActor, order_escrow, order_milestone_release, order_refund, order_release
from offerhub.errors import ServiceError
from offerhub.models import AuditLog
from offerhub.money import money_from_stroops
from offerhub.services import audit_record

PERMISSION = "marketplace.settle_order_manually"
REASON_MAX_LENGTH = 500


class ManualAction(models.TextChoices):
    RELEASE = "release", "Release to seller"
    MILESTONE = "milestone", "Release milestone"
    REFUND = "refund", "Refund buyer"


AUDIT_ACTIONS = {
    ManualAction.RELEASE: "order.manually_released",
    ManualAction.MILESTONE: "order.milestone_manually_released",
    ManualAction.REFUND: "order.manually_refunded",
}


@dataclass(frozen=True)
class SettlementPreview:
    """What a manual settlement pays: `gross` (stroops) out of the escrow to `recipient`
    ("seller" or "buyer"), less the contract's fees, summed per payout as the chain takes them."""

    recipient: str
    recipient_user: User
    gross: int
    fees: Fees
    undelivered: list[str]  # refs of the order milestones paid before they were delivered

    @property
    def dollars(self) -> dict[str, str]:
        return {
            "gross": money_from_stroops(self.gross),
            "trustless_work": money_from_stroops(self.fees.trustless_work),
            "platform": money_from_stroops(self.fees.platform),
            "net": money_from_stroops(self.fees.net),
        }


def settle_manually_allowed(user) -> bool:
    return bool(user.is_active and user.is_staff and user.has_perm(PERMISSION))


def order_settlement_preview(*, order: Order, action: str, milestone_ref: str | None = None) -> SettlementPreview:
    """Who a manual settlement would pay, and how much net of fees; refuses what cannot be paid."""
    escrow = order_escrow(order)
    if escrow is None or escrow.funded_at is None:
        raise ServiceError("ESCROW_NOT_READY", "the order's escrow is not funded: there is nothing to pay out")
    unpaid = [m for m in escrow.milestones.all() if not (m.released or m.resolved)]
    open_refs = [m.ref for m in order.milestones.all() if m.status == OrderMilestone.Status.OPEN]
    if action == ManualAction.MILESTONE:
        milestone = next((m for m in order.milestones.all() if m.ref == milestone_ref), None)
        if milestone is None:
            raise ServiceError("MILESTONE_NOT_FOUND", f"the order has no milestone {milestone_ref!r}")
        if escrow.type != Escrow.Type.MULTI:
            raise ServiceError("INVALID_STATE", "this order's escrow pays out as a whole: release the order")
        unpaid = [m for m in unpaid if m.index == milestone.position]
        if not unpaid:
            raise ServiceError("INVALID_STATE", f"milestone {milestone_ref!r} is already paid out")
        paying = escrow.steps.filter(
            milestone_index=milestone.position, action=EscrowStep.Action.RELEASE_MILESTONE, status__in=EscrowStep.OPEN
        )
        if paying.exists():
            raise ServiceError("INVALID_STATE", f"milestone {milestone_ref!r} is already being paid out")
        open_refs = [milestone_ref] if milestone.status == OrderMilestone.Status.OPEN else []
    elif action not in ManualAction.values:
        raise ServiceError("VALIDATION_ERROR", f"unknown manual settlement {action!r}", field="action")
    if not unpaid:
        raise ServiceError("INVALID_STATE", "nothing is left in the escrow to pay out")
    each = [escrow_fees(amount=m.amount, platform_fee_percent=escrow.platform_fee_percent) for m in unpaid]
    fees = Fees(
        trustless_work=sum(f.trustless_work for f in each),
        platform=sum(f.platform for f in each),
        net=sum(f.net for f in each),
    )
    refund = action == ManualAction.REFUND
    return SettlementPreview(
        recipient="buyer" if refund else "seller",
        recipient_user=order.buyer if refund else order.seller,
        gross=sum(m.amount for m in unpaid),
        fees=fees,
        undelivered=[] if refund else open_refs,
    )


def order_settle_manually(
    *, order: Order, action: str, milestone_ref: str | None = None, reason: str, staff_user: User
) -> Order:
    """Support pays an order's escrow out by hand: `action` "release" (all to the seller,
    delivered or not), "milestone" (one milestone to the seller) or "refund" (all to the
    buyer). The chain pays in the background, as for every escrow step."""
    if not settle_manually_allowed(staff_user):
        raise ServiceError("FORBIDDEN", "only support staff allowed to settle orders manually may do this")
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError("VALIDATION_ERROR", "say why the order is settled by hand", field="reason")
    if len(reason) > REASON_MAX_LENGTH:
        raise ServiceError("VALIDATION_ERROR", f"the reason is at most {REASON_MAX_LENGTH} characters", field="reason")
    actor = OrderActor.for_user(staff_user)
    with transaction.atomic():
        order = Order.objects.select_for_update(of=("self",)).select_related("buyer", "seller").get(pk=order.pk)
        if order.status == Order.Status.DISPUTED:
            dispute = getattr(order, "dispute_record", None)
            raise ServiceError(
                "DISPUTE_ALREADY_OPEN",
                "the order is in dispute: settle it from the dispute's Resolve page",
                details={"disputeId": dispute.public_id if dispute else None},
            )
        if order.status != Order.Status.IN_PROGRESS:
            raise ServiceError(
                "INVALID_STATE",
                f"the order is {order.get_status_display()} ({order.status}); only an order in progress is settled",
                details={"currentState": order.status, "allowedStates": [Order.Status.IN_PROGRESS]},
            )
        preview = order_settlement_preview(order=order, action=action, milestone_ref=milestone_ref)
        before = order.status
        if action == ManualAction.RELEASE:
            order = order_release(order=order, actor=actor, reason=reason, undelivered_ok=True)
        elif action == ManualAction.MILESTONE:
            order = order_milestone_release(order=order, ref=milestone_ref, actor=actor, undelivered_ok=True)
        else:
            order = order_refund(order=order, actor=actor, reason=reason)
        audit_record(
            action=AUDIT_ACTIONS[action],
            resource_type="Order",
            resource_id=order.public_id,
            actor_type=AuditLog.ActorType.SUPPORT,
            actor_id=staff_user.public_id,
            payload_before={"status": before},
            payload_after={
                "status": order.status,
                "reason": reason,
                "milestoneRef": milestone_ref if action == ManualAction.MILESTONE else None,
                "undeliveredMilestones": preview.undelivered,
                "paidTo": preview.recipient,
                "amount": preview.dollars["gross"],
                "netAmount": preview.dollars["net"],
            },
            user_id=order.buyer.public_id,
            marketplace_id=order.marketplace_id,
        )
    return order
