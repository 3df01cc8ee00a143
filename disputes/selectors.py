"""Dispute reads for the API (API.md §10): what a key may see, and the wire shape with its order."""

from django.db.models import Prefetch, QuerySet
from django.urls import reverse

from disputes.models import Dispute, DisputeEvidence, DisputeMessage
from marketplace.models import OrderMilestone
from marketplace.orders_selectors import dispute_as_api, order_as_api, orders_with_escrows
from offerhub.errors import ServiceError
from offerhub.timefmt import iso_timestamp


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


# --- [X] The case file: evidence and the thread ---------------------------------------------------


def dispute_evidence_rows(*, dispute: Dispute) -> QuerySet[DisputeEvidence]:
    return DisputeEvidence.objects.filter(dispute=dispute)


def dispute_evidence_get(*, dispute: Dispute, public_id: str) -> DisputeEvidence:
    """One piece of the case's evidence; 404 NOT_FOUND otherwise (another case's too)."""
    evidence = dispute_evidence_rows(dispute=dispute).filter(public_id=public_id).first()
    if evidence is None:
        raise ServiceError(
            "NOT_FOUND", f"Evidence {public_id[:100]} not found", details={"evidenceId": public_id[:100]}
        )
    return evidence


def evidence_as_api(evidence: DisputeEvidence, *, dispute: Dispute) -> dict:
    file = None
    if evidence.kind == DisputeEvidence.Kind.FILE:
        url = reverse(
            "api-dispute-evidence-file", kwargs={"dispute_id": dispute.public_id, "evidence_id": evidence.public_id}
        )
        file = {"name": evidence.file_name, "size": evidence.file_size, "url": url}
    return {
        "id": evidence.public_id,
        "disputeId": dispute.public_id,
        "submittedBy": evidence.party,
        "kind": evidence.kind,
        "text": evidence.text or None,
        "link": evidence.link or None,
        "file": file,
        "createdAt": iso_timestamp(evidence.created_at),
    }


def dispute_messages_visible(*, dispute: Dispute, principal) -> QuerySet[DisputeMessage]:
    """The case's thread as a key may read it: support's internal notes only with the support scope."""
    messages = DisputeMessage.objects.filter(dispute=dispute)
    if not principal.has_scope("support"):
        messages = messages.filter(internal=False)
    return messages


def message_as_api(message: DisputeMessage, *, dispute: Dispute) -> dict:
    return {
        "id": message.public_id,
        "disputeId": dispute.public_id,
        "postedBy": message.party,
        "authorName": message.author_name,
        "body": message.body,
        "internal": message.internal,
        "createdAt": iso_timestamp(message.created_at),
    }
