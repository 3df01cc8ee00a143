"""The dispute case as the order page shows it to the buyer and the seller: its state in plain
words, both sides' evidence, the thread (never support's internal notes), the deadline, the
outcome net of fees, and the forms each side may use now.

The order page loads the case with the order (marketplace.order_views._order_for prefetches the
evidence and the public messages), so a case of any size costs the same few queries."""

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Prefetch
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format

from disputes.forms import EvidenceForm, MessageForm, WithdrawForm
from disputes.models import Dispute, DisputeMessage, Party
from escrow.services import escrow_fees, escrow_resolution_payouts
from marketplace.models import DisputeReason, Order
from offerhub.money import money_dollars

S = Dispute.Status
STATUS_WORDS = {
    S.OPEN: ("Open: waiting for support", "danger"),
    S.UNDER_REVIEW: ("Under review by support", "warning"),
    S.RESOLVED: ("Resolved", "success"),
    S.WITHDRAWN: ("Withdrawn", "secondary"),
}
DECISION_WORDS = {
    Dispute.Decision.FULL_RELEASE: "Support decided that the seller is paid in full.",
    Dispute.Decision.FULL_REFUND: "Support decided that the buyer is refunded in full.",
    Dispute.Decision.SPLIT: "Support decided to split the payment between the buyer and the seller.",
}
# The forms of the case a party may post from the order page ("posted" names in _form_refused).
CASE_FORMS = ("evidence", "message", "withdraw")


def dispute_prefetches(prefix: str = "dispute_record") -> list:
    """What the order page needs of an order's case, loaded with the order: the evidence and
    the messages the parties may read (internal notes never leave the database here)."""
    public = DisputeMessage.objects.filter(internal=False).order_by("created_at", "pk")
    return [
        f"{prefix}__evidence_items",
        Prefetch(f"{prefix}__messages", queryset=public, to_attr="public_messages"),
    ]


@dataclass
class Share:
    """What one side receives from a decision: gross before fees, the fees, and net."""

    side: str  # BUYER or SELLER
    who: str  # "you", "the buyer", "the seller"
    gross: object
    fees: object
    net: object


def _when(moment) -> str:
    return date_format(timezone.localtime(moment), "M j, Y H:i")


def _who(party: str, viewer_party: str | None) -> str:
    if party == viewer_party:
        return "you"
    return {Party.BUYER: "the buyer", Party.SELLER: "the seller"}.get(party, "support")


def _name(party: str, viewer_party: str | None, order: Order) -> str:
    """Who wrote something, as the thread and the evidence list say it."""
    if party == viewer_party:
        return "You"
    if party == Party.BUYER:
        return f"{order.buyer.display_name} (buyer)"
    if party == Party.SELLER:
        return f"{order.seller.display_name} (seller)"
    return "Support"


def _deadline(dispute: Dispute, viewer_party: str | None, now) -> str:
    """Where the other party's answer stands, in plain words (only while the case is unsettled)."""
    if dispute.status not in Dispute.UNSETTLED or dispute.respond_by is None:
        return ""
    party = dispute.responding_party
    who = _who(party, viewer_party)
    if dispute.responded_at is not None:
        return f"{who.capitalize()} answered on {_when(dispute.responded_at)}."
    if dispute.is_overdue(now=now):
        if who == "you":
            return (
                f"You did not answer by {_when(dispute.respond_by)}: please answer now, support may decide "
                "without your side."
            )
        return f"{who.capitalize()} did not answer by {_when(dispute.respond_by)}: support may decide without them."
    verb = "have" if who == "you" else "has"
    return f"{who.capitalize()} {verb} until {_when(dispute.respond_by)} to answer."


def _shares(dispute: Dispute, viewer_party: str | None, escrow) -> list[Share]:
    """Each side's share of the decision, net of fees exactly as the escrow's resolution steps
    pay it (per distribution); from the decided totals before any step is queued."""
    fee_percent = escrow.platform_fee_percent if escrow is not None else settings.OFFERHUB_PLATFORM_FEE_PERCENT
    # Only the decision's own payouts: a milestone paid by the resolver after an earlier,
    # withdrawn dispute is not part of this outcome.
    paid = escrow_resolution_payouts(escrow=escrow, since=dispute.resolved_at) if escrow is not None else {}
    addresses = {Party.SELLER: "serviceProvider", Party.BUYER: "approver"}
    shares = []
    for side, gross in ((Party.SELLER, dispute.release_amount or 0), (Party.BUYER, dispute.refund_amount or 0)):
        address = (escrow.roles or {}).get(addresses[side]) if escrow is not None else None
        if paid and address:
            _, net = paid.get(address, (0, 0))
        else:
            net = escrow_fees(amount=gross, platform_fee_percent=fee_percent).net if gross else 0
        shares.append(
            Share(
                side=side,
                who=_who(side, viewer_party),
                gross=money_dollars(gross),
                fees=money_dollars(gross) - money_dollars(net),
                net=money_dollars(net),
            )
        )
    return shares


def _evidence_rows(dispute: Dispute, viewer_party: str | None, order: Order) -> list[dict]:
    rows = []
    for item in dispute.evidence_items.all():
        rows.append(
            {
                "item": item,
                "by": _name(item.party, viewer_party, order),
                "mine": item.party == viewer_party,
                "file_url": reverse("dispute-evidence-file", args=[dispute.public_id, item.public_id])
                if item.kind == item.Kind.FILE
                else "",
            }
        )
    return rows


def dispute_case(*, order: Order, escrow, user, posted: dict | None = None) -> dict | None:
    """The case of `order` for the page `user` sees, or None when the order was never disputed.
    `posted` holds a refused case form ("evidence", "message" or "withdraw") to show again as it
    was filled in."""
    dispute = getattr(order, "dispute_record", None)
    if dispute is None:
        return None
    posted = posted or {}
    viewer_party = Party.BUYER if order.is_buyer(user) else Party.SELLER if order.is_seller(user) else None
    if viewer_party is None and not user.has_perm("disputes.view_dispute"):
        return None  # staff who do not handle disputes see the order, not its case
    unsettled = dispute.status in Dispute.UNSETTLED
    may_add = viewer_party is not None and unsettled
    may_withdraw = viewer_party == dispute.opened_by and dispute.status == S.OPEN
    messages = getattr(dispute, "public_messages", None)
    if messages is None:  # not loaded with the order (a page that does not prefetch)
        messages = list(dispute.messages.filter(internal=False))
    label, colour = STATUS_WORDS[dispute.status]
    evidence = _evidence_rows(dispute, viewer_party, order)
    return {
        "dispute": dispute,
        "status_label": label,
        "status_colour": colour,
        "reason": dict(DisputeReason.choices).get(dispute.reason, dispute.reason),
        "opened_by": _who(dispute.opened_by, viewer_party),
        "statement": [text for text in (dispute.evidence or []) if isinstance(text, str) and text.strip()],
        "evidence": evidence,
        "thread": [
            {"message": message, "by": _name(message.party, viewer_party, order), "mine": message.party == viewer_party}
            for message in messages
        ],
        "deadline": _deadline(dispute, viewer_party, timezone.now()),
        "decision": DECISION_WORDS.get(dispute.resolution_decision, "") if dispute.status == S.RESOLVED else "",
        "shares": _shares(dispute, viewer_party, escrow) if dispute.status == S.RESOLVED else [],
        "paid": order.status == Order.Status.CLOSED,
        "may_add": may_add,
        "may_withdraw": may_withdraw,
        "evidence_form": (posted.get("evidence") or EvidenceForm(auto_id="evidence-%s")) if may_add else None,
        "message_form": (posted.get("message") or MessageForm(auto_id="message-%s")) if may_add else None,
        "withdraw_form": (posted.get("withdraw") or WithdrawForm(auto_id="withdraw-%s")) if may_withdraw else None,
        # The forms region of the page is replaced only when what it offers changes.
        "forms_key": f"{dispute.status}:{int(may_add)}:{int(may_withdraw)}",
        # Anything new in the case makes the live fragment differ from the page's.
        "version": ":".join(
            str(part)
            for part in (
                dispute.status,
                dispute.updated_at.timestamp(),
                evidence[-1]["item"].pk if evidence else 0,
                messages[-1].pk if messages else 0,
            )
        ),
    }
