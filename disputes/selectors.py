"""Dispute reads for the API (API.md §10): what a key may see, and the wire shape with its order."""

from django.db.models import Prefetch, QuerySet

from disputes.models import Dispute
from marketplace.models import OrderMilestone
from marketplace.orders_selectors import dispute_as_api, order_as_api, orders_with_escrows
from offerhub.errors import ServiceError


def disputes_visible(*, principal) -> QuerySet[Dispute]:
    """Disputes an API key may see: those of the orders it sees (its marketplace's, or all)."""
    disputes = Dispute.objects.select_related(
        "order__buyer", "order__seller", "order__dispute_record"
    ).prefetch_related(Prefetch("order__milestones", queryset=OrderMilestone.objects.order_by("position")))
    if principal.marketplace_id:
        disputes = disputes.filter(order__marketplace_id=principal.marketplace_id)
    return disputes


def dispute_get(*, principal, public_id: str) -> Dispute:
    """One dispute the key may see; 404 DISPUTE_NOT_FOUND otherwise (another tenant's too)."""
    dispute = disputes_visible(principal=principal).filter(public_id=public_id).first()
    if dispute is None:
        raise ServiceError(
            "DISPUTE_NOT_FOUND", f"Dispute {public_id[:100]} not found", details={"disputeId": public_id[:100]}
        )
    return dispute


def disputes_as_api(disputes: list[Dispute]) -> list[dict]:
    """Each dispute with its order (API.md §10), the page's escrows read in one query."""
    orders = orders_with_escrows([dispute.order for dispute in disputes])
    return [dispute_as_api(dispute, order=order_as_api(order)) for dispute, order in zip(disputes, orders, strict=True)]
