"""Built-in event subscribers."""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from offerhub.events import event_subscriber


def user_group_name(user_public_id: str) -> str:
    return f"user.{user_public_id}"


@event_subscriber("*")
def push_to_user_sockets(event: dict) -> None:
    """Live updates: the user an event concerns sees it on any open page (ws/events/)."""
    user_id = event["metadata"].get("userId")
    if not user_id:
        return
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(user_group_name(user_id), {"type": "domain.event", "event": event})
