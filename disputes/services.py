"""The dispute case: opening it freezes the order and its escrow (on chain); support assigns
it and resolves it, and the resolution is paid on chain by the existing escrow resolution.

The decision is final when `dispute_resolve` commits (the dispute is RESOLVED, a second
resolve is refused); the payout is an escrow step the runner submits once, and the order
follows it (marketplace.orders): RELEASE_REQUESTED/REFUND_REQUESTED, or DISPUTED for a
split, then RELEASED/REFUNDED and CLOSED when the chain confirms. A resolution the chain
refuses for good puts the case back UNDER_REVIEW and the order back DISPUTED, so support
can decide again.
"""

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from disputes.models import Dispute, DisputeEvidence, DisputeMessage, Party
from escrow.models import Escrow, EscrowStep
from escrow.services import step_failed
from marketplace.models import Order
from marketplace.orders import (
    OrderActor,
    order_dispute,
    order_dispute_resolve,
    order_dispute_withdraw,
    order_escrow,
    order_escrow_unpaid,
)
from offerhub.errors import ServiceError
from offerhub.files import file_delete_on_rollback, upload_refusal
from offerhub.ids import new_dispute_id
from offerhub.money import money_from_stroops
from offerhub.services import audit_record, event_publish
from offerhub.timefmt import iso_timestamp

Decision = Dispute.Decision
RESOLUTION_STEPS = (EscrowStep.Action.RESOLVE, EscrowStep.Action.RESOLVE_MILESTONE)
ESCROW = OrderActor("SYSTEM", "escrow")

EVIDENCE_MAX_BYTES = 10 * 1024 * 1024
# Extension → what the file must start with: images and PDF, as support can preview them.
EVIDENCE_TYPES: dict[str, tuple[bytes, ...]] = {
    "pdf": (b"%PDF-",),
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpg": (b"\xff\xd8\xff",),
    "jpeg": (b"\xff\xd8\xff",),
    "gif": (b"GIF87a", b"GIF89a"),
    "webp": (b"RIFF",),
}
EVIDENCE_ACCEPT = ",".join(f".{extension}" for extension in EVIDENCE_TYPES)
EVIDENCE_MAX_PER_PARTY = 30
MESSAGE_MAX_CHARS = 2000
MESSAGES_MAX_PER_CASE = 500


@transaction.atomic
def dispute_open(
    *, order, actor: OrderActor, opened_by: str, reason: str, evidence: list[str] | None = None
) -> Dispute:
    """`opened_by` BUYER or SELLER; `reason` one of Dispute.Reason. One case per order: a
    withdrawn case opens again (the escrow is still frozen on chain), any other is refused.
    The other party has OFFERHUB_DISPUTE_RESPONSE_HOURS to answer."""
    withdrawn = (
        Dispute.objects.select_for_update(of=("self",)).filter(order=order, status=Dispute.Status.WITHDRAWN).first()
    )
    if withdrawn is None and Dispute.objects.filter(order=order).exists():
        raise ServiceError("DISPUTE_ALREADY_OPEN", "this order already has a dispute")
    public_id = withdrawn.public_id if withdrawn else new_dispute_id()
    order = order_dispute(order=order, actor=actor, opened_by=opened_by.lower(), reason=reason, dispute_id=public_id)
    respond_by = timezone.now() + timedelta(hours=settings.OFFERHUB_DISPUTE_RESPONSE_HOURS)
    if withdrawn:
        dispute = withdrawn
        dispute.reopen_withdrawn(opened_by=opened_by.upper(), reason=reason, evidence=evidence or None)
        dispute.respond_by = respond_by
        dispute.save()
    else:
        dispute = Dispute.objects.create(
            public_id=public_id,
            order=order,
            opened_by=opened_by.upper(),
            reason=reason,
            evidence=evidence or None,
            respond_by=respond_by,
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
            "openedAt": iso_timestamp(timezone.now() if withdrawn else dispute.created_at),
        },
        user_id=order.buyer.public_id,
        marketplace_id=order.marketplace_id,
    )
    return dispute


def _locked(dispute: Dispute) -> Dispute:
    return (
        Dispute.objects.select_for_update(of=("self",))
        .select_related("order__buyer", "order__seller")
        .get(pk=dispute.pk)
    )


def _invalid_state(dispute: Dispute, allowed: str, words: str) -> ServiceError:
    return ServiceError(
        "INVALID_STATE",
        f"the dispute is {dispute.status}; only a dispute {allowed} can be {words}",
        details={"currentState": dispute.status, "allowedStates": [allowed]},
    )


def _support_only(actor: OrderActor, dispute: Dispute) -> None:
    if not actor.is_support:
        raise ServiceError("FORBIDDEN", "only support handles a dispute")
    _not_a_party(actor, dispute)


def _agent_not_a_party(dispute: Dispute, agent: str) -> None:
    order = dispute.order
    parties = {(user.email or "").lower() for user in (order.buyer, order.seller)} - {""}  # API users may have none
    if agent.strip().lower() in parties:
        raise ServiceError("FORBIDDEN", "that agent is a party to this order", field="assignedTo")


def _not_a_party(actor: OrderActor, dispute: Dispute) -> None:
    """Staff who bought or sold the order never handle its case (nor read support's notes on it)."""
    if actor.user is not None and dispute.order.is_participant(actor.user):
        raise ServiceError("FORBIDDEN", "you are a party to this order: another agent handles its dispute")


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
    dispute = _locked(dispute)
    _support_only(actor, dispute)
    if dispute.status != Dispute.Status.OPEN:
        raise _invalid_state(dispute, Dispute.Status.OPEN, "assigned")
    _agent_not_a_party(dispute, agent)
    before = dispute.status
    dispute.assign(agent=agent)
    dispute.save()
    _record(dispute, action="dispute.under_review", actor=actor, before=before, assignedTo=dispute.assigned_to)
    _publish(
        dispute, "dispute.under_review", reviewedBy=dispute.assigned_to, reviewStartedAt=iso_timestamp(timezone.now())
    )
    return dispute


@transaction.atomic
def dispute_reassign(*, dispute: Dispute, agent: str, actor: OrderActor) -> Dispute:
    """Hand a case under review to another agent (the review goes on)."""
    dispute = _locked(dispute)
    _support_only(actor, dispute)
    if dispute.status != Dispute.Status.UNDER_REVIEW:
        raise _invalid_state(dispute, Dispute.Status.UNDER_REVIEW, "reassigned")
    if not agent.strip():
        raise ServiceError("VALIDATION_ERROR", "name the agent who takes the case", field="assignedTo")
    _agent_not_a_party(dispute, agent)
    previous = dispute.assigned_to
    dispute.reassign(agent=agent.strip())
    dispute.save()
    _record(
        dispute,
        action="dispute.reassigned",
        actor=actor,
        before=dispute.status,
        assignedTo=dispute.assigned_to,
        previouslyAssignedTo=previous,
    )
    return dispute


@transaction.atomic
def dispute_withdraw(*, dispute: Dispute, party: str, actor: OrderActor) -> Dispute:
    """The party who opened the case takes it back while it is OPEN (before support took it
    up): the order goes on as before. The escrow's dispute flag stays set on chain (Trustless
    Work v1 cannot clear it), so whatever the escrow pays out later, release or refund, is paid
    by the platform as dispute resolver, exactly as the parties then ask (escrow_release)."""
    dispute = _locked(dispute)
    _speaks_for(dispute, party=party, actor=actor)
    if party != dispute.opened_by:
        raise ServiceError("FORBIDDEN", "only the party who opened the dispute can withdraw it")
    if dispute.status != Dispute.Status.OPEN:
        raise _invalid_state(dispute, Dispute.Status.OPEN, "withdrawn")
    before = dispute.status
    dispute.withdraw()
    dispute.save()
    order_dispute_withdraw(
        order=dispute.order, actor=actor, disputed_at=dispute.created_at, dispute_id=dispute.public_id
    )
    _record(dispute, action="dispute.withdrawn", actor=actor, before=before, withdrawnBy=party)
    _publish(dispute, "dispute.withdrawn", withdrawnBy=party, withdrawnAt=iso_timestamp(dispute.withdrawn_at))
    return dispute


# --- The case file: evidence and the thread ------------------------------------------------------


def dispute_party_of(*, dispute: Dispute, user) -> str | None:
    """BUYER, SELLER or SUPPORT for a signed-in user, None for anyone else."""
    order = dispute.order
    if order.is_buyer(user):
        return Party.BUYER
    if order.is_seller(user):
        return Party.SELLER
    if getattr(user, "is_support", False):
        return Party.SUPPORT
    return None


def _speaks_for(dispute: Dispute, *, party: str, actor: OrderActor) -> None:
    """A user speaks only as themselves; support and the marketplace's API key may name the party."""
    if party not in Party.values:
        raise ServiceError("VALIDATION_ERROR", f"party must be one of {', '.join(Party.values)}", field="party")
    if party == Party.SUPPORT:
        if actor.is_support:
            _not_a_party(actor, dispute)
            return
        if actor.type == "API_KEY":
            raise ServiceError("INSUFFICIENT_SCOPE", "speaking as support needs the support scope")
        raise ServiceError("FORBIDDEN", "only support speaks as support")
    if actor.type == "API_KEY":
        return  # the marketplace speaks for its members
    if actor.user is None or dispute_party_of(dispute=dispute, user=actor.user) != party:
        raise ServiceError("FORBIDDEN", "you take part in this case only as yourself")


def _still_open(dispute: Dispute, words: str) -> None:
    if dispute.status not in Dispute.UNSETTLED:
        raise ServiceError(
            "INVALID_STATE",
            f"the dispute is {dispute.status}: {words} only while it is open or under review",
            details={"currentState": dispute.status, "allowedStates": list(Dispute.UNSETTLED)},
        )


def _answered(dispute: Dispute, party: str) -> None:
    """The other party's first word stops the response clock."""
    if party == dispute.responding_party and dispute.responded_at is None:
        dispute.responded_at = timezone.now()
        dispute.save(update_fields=["responded_at", "updated_at"])


@transaction.atomic
def dispute_evidence_add(
    *,
    dispute: Dispute,
    party: str,
    actor: OrderActor,
    text: str = "",
    link: str = "",
    file=None,
) -> DisputeEvidence:
    """Add a piece of evidence: a text, a link, or a file (PDF or image, checked by its content)
    with an optional caption. Stored privately; only the parties and staff can read it."""
    dispute = _locked(dispute)
    _speaks_for(dispute, party=party, actor=actor)
    _still_open(dispute, "evidence is added")
    text, link = (text or "").strip(), (link or "").strip()
    if len(text) > MESSAGE_MAX_CHARS:
        raise ServiceError("VALIDATION_ERROR", f"at most {MESSAGE_MAX_CHARS} characters", field="text")
    if link:
        try:
            URLValidator(schemes=["http", "https"])(link)
        except ValidationError:
            raise ServiceError("VALIDATION_ERROR", "a link is a web address (https://…)", field="link") from None
    if file is not None:
        problem = upload_refusal(file, types=EVIDENCE_TYPES, max_bytes=EVIDENCE_MAX_BYTES)
        if problem:
            raise ServiceError("VALIDATION_ERROR", problem, field="file")
    if file is not None and link:
        raise ServiceError("VALIDATION_ERROR", "one piece of evidence is a file or a link, not both", field="link")
    if not (text or link or file is not None):
        raise ServiceError("VALIDATION_ERROR", "add a text, a link or a file", field="text")
    if dispute.evidence_items.filter(party=party).count() >= EVIDENCE_MAX_PER_PARTY:
        raise ServiceError(
            "VALIDATION_ERROR", f"at most {EVIDENCE_MAX_PER_PARTY} pieces of evidence each", field="text"
        )
    Kind = DisputeEvidence.Kind
    kind = Kind.FILE if file is not None else Kind.LINK if link else Kind.TEXT
    evidence = DisputeEvidence(dispute=dispute, party=party, author=actor.user, kind=kind, text=text, link=link)
    if file is not None:
        evidence.file_name = (file.name or "evidence").rsplit("/", 1)[-1][:255]
        evidence.file_size = file.size
        evidence.file.save(evidence.file_name, file, save=False)
        file_delete_on_rollback(storage=evidence.file.storage, name=evidence.file.name)  # no orphan if undone
    evidence.save()
    _answered(dispute, party)
    _record(
        dispute,
        action="dispute.evidence_added",
        actor=actor,
        before=dispute.status,
        evidenceId=evidence.public_id,
        party=party,
        kind=kind,
    )
    _publish(dispute, "dispute.evidence_added", evidenceId=evidence.public_id, submittedBy=party, kind=kind)
    # the other participants are e-mailed by marketplace.notifications on this event
    return evidence


@transaction.atomic
def dispute_message_post(
    *,
    dispute: Dispute,
    party: str,
    actor: OrderActor,
    body: str,
    internal: bool = False,
    author_name: str = "",
) -> DisputeMessage:
    """Post to the case's thread; the other participants hear of it by e-mail. An `internal`
    note is support's only: the parties never see it and no one is notified."""
    dispute = _locked(dispute)
    _speaks_for(dispute, party=party, actor=actor)
    if internal and party != Party.SUPPORT:
        raise ServiceError("FORBIDDEN", "only support writes internal notes", field="internal")
    if not internal:
        _still_open(dispute, "messages are posted")
    body = (body or "").strip()
    if not body:
        raise ServiceError("VALIDATION_ERROR", "write a message", field="body")
    if len(body) > MESSAGE_MAX_CHARS:
        raise ServiceError("VALIDATION_ERROR", f"at most {MESSAGE_MAX_CHARS} characters", field="body")
    if dispute.messages.count() >= MESSAGES_MAX_PER_CASE:
        raise ServiceError("VALIDATION_ERROR", "this case's thread is full: contact support", field="body")
    user = actor.user
    name = (author_name or (getattr(user, "display_name", "") if user else "") or party.title())[:100]
    message = DisputeMessage.objects.create(
        dispute=dispute, party=party, author=user, author_name=name, body=body, internal=internal
    )
    _record(
        dispute,
        action="dispute.note_added" if internal else "dispute.message_posted",
        actor=actor,
        before=dispute.status,
        messageId=message.public_id,
        party=party,
    )
    if not internal:
        _answered(dispute, party)
        _publish(dispute, "dispute.message_posted", messageId=message.public_id, postedBy=party)  # e-mails
    return message


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
    milestone_release_amounts: dict[str, int] | None = None,
) -> Dispute:
    """Support decides (UNDER_REVIEW → RESOLVED) and the escrow pays it: `release_amount` to
    the seller and `refund_amount` to the buyer (stroops, SPLIT only; a full decision pays
    everything the escrow still holds to one side). Each payout is net of the contract's fees.
    A SPLIT of a multi-release escrow may say, per open milestone (by ref), what of it goes to
    the seller (`milestone_release_amounts`); the rest of each milestone goes to the buyer."""
    dispute = _locked(dispute)
    _support_only(actor, dispute)
    if dispute.status != Dispute.Status.UNDER_REVIEW:
        raise _invalid_state(dispute, Dispute.Status.UNDER_REVIEW, "resolved")
    order = Order.objects.get(pk=dispute.order_id)
    seller_by_index = None
    if milestone_release_amounts is not None:
        if decision != Decision.SPLIT:
            raise ServiceError("INVALID_REQUEST", "milestone shares are for a SPLIT", field="milestones")
        seller_by_index = _shares_by_index(order, milestone_release_amounts)
        if release_amount is None and refund_amount is None:
            release_amount = sum(seller_by_index.values())
            refund_amount = order_escrow_unpaid(order) - release_amount
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
    order_dispute_resolve(
        order=order,
        actor=actor,
        seller_amount=seller_amount,
        buyer_amount=buyer_amount,
        seller_by_index=seller_by_index,
    )
    return dispute


def _shares_by_index(order: Order, amounts_by_ref: dict[str, int]) -> dict[int, int]:
    """Milestone refs → the escrow's milestone indexes (escrow_resolve checks the amounts)."""
    escrow = order_escrow(order)
    index_of = {m.ref: m.index for m in escrow.milestones.all()} if escrow else {}
    unknown = sorted(set(amounts_by_ref) - set(index_of))
    if unknown:
        raise ServiceError("MILESTONE_NOT_FOUND", f"the order has no milestone {unknown[0]!r}", field="milestones")
    return {index_of[ref]: amount for ref, amount in amounts_by_ref.items()}


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
