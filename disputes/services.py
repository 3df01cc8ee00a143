"""Opening a dispute: the order and its escrow freeze (on chain) and a case opens for support."""

from django.db import transaction
from django.utils import timezone

from disputes.models import Dispute
from marketplace.orders import OrderActor, order_dispute
from offerhub.errors import ServiceError
from offerhub.ids import new_dispute_id
from offerhub.services import audit_record, event_publish
from offerhub.timefmt import iso_timestamp


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
