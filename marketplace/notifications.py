"""E-mail on an order's key transitions and on its dispute's thread, sent from event subscribers.

Each subscriber writes one EmailNotification per event (keyed by eventId: a redelivered event
writes nothing new) in the transaction that advances its cursor; the e-mails a transaction
wrote are sent together after its commit (from the delivering task, else by one task) and
marked sent, and the sweeper sends one left unsent. So a crash after the change committed
still sends the e-mail, once in the normal path. The order e-mails of a delivery pass take
one read of their orders and one INSERT (a batch subscriber). People see the order's short
reference (`Order #A7K2-93`, marketplace.references), the link carries its full id.
"""

from django.conf import settings
from django.contrib.auth import get_user_model

from disputes.models import DisputeEvidence, DisputeMessage, Party
from marketplace.models import Order
from marketplace.orders import seller_net
from marketplace.references import order_reference
from offerhub.events import event_subscriber
from offerhub.money import money_from_stroops
from offerhub.services import email_notifications_write

NOTIFICATIONS = {
    "order.in_progress": (
        "seller",
        "New order: {title}",
        "{buyer} paid ${amount} for “{title}”. The money is safe in escrow until you deliver.",
    ),
    "order.delivered": (
        "buyer",
        "Delivered: {title}",
        "{seller} marked “{title}” delivered. Review it and approve the payment, or open a dispute.",
    ),
    "order.released": ("seller", "You've been paid for {title}", "${net} for “{title}” is now in your balance."),
    "order.refunded": ("buyer", "Refund for {title}", "The payment for “{title}” was refunded to your balance."),
    "order.disputed": (
        "both",
        "Dispute opened: {title}",
        "A dispute was opened on “{title}”. The money stays in escrow until support decides.",
    ),
    "order.dispute_withdrawn": (
        "both",
        "Dispute withdrawn: {title}",
        "The dispute on “{title}” was withdrawn. The order goes on: the seller delivers, the buyer approves.",
    ),
    "order.canceled": ("both", "Order canceled: {title}", "The order “{title}” was canceled."),
}


def email_notification_queue(*, key: str, event_id: str, recipients: list[str], subject: str, body: str) -> None:
    """Write the e-mail once per `key` and send it after commit, with the others of the transaction."""
    email_notifications_write([(key, event_id, recipients, subject, body)])


def order_emails(event: dict) -> None:
    """The participants of an order hear of its key transitions (NOTIFICATIONS)."""
    order_emails_batch([event])


@event_subscriber(*NOTIFICATIONS, name="marketplace.order_emails", batch=True)
def order_emails_batch(events: list[dict]) -> None:
    """order_emails for the events of a delivery pass: one read of their orders, one INSERT."""
    wanted = [e for e in events if e["eventType"] in NOTIFICATIONS and e.get("aggregateType") == "Order"]
    if not wanted:
        return
    orders = {
        order.public_id: order
        for order in Order.objects.select_related("buyer", "seller").filter(
            public_id__in={event["aggregateId"] for event in wanted}
        )
    }
    emails = []
    for event in wanted:
        order = orders.get(event["aggregateId"])
        if order is None:
            continue  # an escrow opened through the API for an engagement id of its own
        whom, subject, body = NOTIFICATIONS[event["eventType"]]
        users = {"buyer": [order.buyer], "seller": [order.seller], "both": [order.buyer, order.seller]}[whom]
        recipients = [user.email for user in users if user.email]
        if not recipients:
            continue
        values = {
            "title": order.title,
            "buyer": order.buyer.display_name,
            "seller": order.seller.display_name,
            "amount": money_from_stroops(order.amount),
            # As the release event says (the escrow's own fee percent), else at today's.
            "net": (event.get("payload") or {}).get("netAmount") or money_from_stroops(seller_net(amount=order.amount)),
        }
        link = f"{settings.SITE_URL}/orders/{order.public_id}/"
        emails.append(
            (
                f"{event['eventId']}:order",
                event["eventId"],
                recipients,
                subject.format(**values),
                body.format(**values) + f"\n\nOrder {order_reference(order.pk)}: {link}\n",
            )
        )
    email_notifications_write(emails)


@event_subscriber("dispute.message_posted", "dispute.evidence_added", name="disputes.thread_emails")
def dispute_thread_emails(event: dict) -> None:
    """A message or a piece of evidence on a dispute: its other participants (the buyer, the
    seller and the agent reviewing it, never the author) are e-mailed."""
    payload = event.get("payload") or {}
    if event["eventType"] == "dispute.message_posted":
        item = DisputeMessage.objects.filter(public_id=payload.get("messageId"), internal=False).first()
        what, text = "wrote", item and item.body
    elif event["eventType"] == "dispute.evidence_added":
        item = DisputeEvidence.objects.filter(public_id=payload.get("evidenceId")).first()
        what, text = "added evidence", item and (item.text or item.link or item.file_name)
    else:
        return
    if item is None:
        return
    dispute = item.dispute
    order = Order.objects.select_related("buyer", "seller").get(pk=dispute.order_id)
    author_party, author = item.party, item.author
    recipients = []
    if author_party != Party.BUYER:
        recipients.append(order.buyer.email)
    if author_party != Party.SELLER:
        recipients.append(order.seller.email)
    if author_party != Party.SUPPORT and "@" in dispute.assigned_to:
        agent = get_user_model().objects.filter(email__iexact=dispute.assigned_to, is_staff=True).first()
        if agent is not None:
            recipients.append(agent.email)
    recipients = [email for email in recipients if email and not (author and email == author.email)]
    if not recipients:
        return
    who = {"BUYER": "The buyer", "SELLER": "The seller", "SUPPORT": "Support"}[author_party]
    excerpt = text if len(text) <= 300 else text[:297] + "..."
    link = f"{settings.SITE_URL}/orders/{order.public_id}/"
    email_notification_queue(
        key=f"{event['eventId']}:dispute",
        event_id=event["eventId"],
        recipients=recipients,
        subject=f"Dispute on “{order.title}”: {who.lower()} {what}",
        body=f"{who} {what} on the dispute about “{order.title}”:\n\n{excerpt}\n\n"
        f"Order {order_reference(order.pk)}: {link}\n",
    )
