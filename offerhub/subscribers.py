"""Built-in event subscribers."""

import re

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from offerhub.events import event_subscriber


def user_group_name(user_public_id: str) -> str:
    return f"user.{user_public_id}"


def order_group_name(order_public_id: str) -> str:
    return f"order.{order_public_id}"


_GROUP_SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,90}$")  # what Channels accepts in a group name


@event_subscriber("*", writes=False)
def push_to_user_sockets(event: dict) -> None:
    """Live updates: the user an event concerns sees it on any open page (ws/events/)."""
    user_id = event["metadata"].get("userId")
    if not user_id:
        return
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(user_group_name(user_id), {"type": "domain.event", "event": event})


@event_subscriber("*", writes=False)
def push_to_order_pages(event: dict) -> None:
    """Live order pages: everyone watching an order's page (ws/orders/<id>/, its buyer and
    its seller) hears of the order's events and of its dispute's, whoever of them the event names."""
    if event.get("aggregateType") == "Dispute":  # the order's case: evidence, thread, status
        order_id = (event.get("payload") or {}).get("orderId") or ""
    elif event.get("aggregateType") == "Order":
        order_id = event.get("aggregateId") or ""
    else:
        return
    if not _GROUP_SAFE_ID.match(order_id):
        return  # e.g. an escrow opened through the API for an engagement id of its own
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(order_group_name(order_id), {"type": "domain.event", "event": event})
