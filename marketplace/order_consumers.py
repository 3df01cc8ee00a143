"""WebSocket of the order page: its buyer and seller hear of each of the order's events
(offerhub.subscribers.push_to_order_pages) and the page fetches its live fragment again."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db.models import Q

from marketplace.models import Order
from offerhub.subscribers import order_group_name

NOT_SIGNED_IN = 4401
NOT_A_PARTICIPANT = 4403


@database_sync_to_async
def _is_participant(user, public_id: str) -> bool:
    return Order.objects.filter(Q(buyer=user) | Q(seller=user), public_id=public_id).exists()


class OrderEventsConsumer(AsyncJsonWebsocketConsumer):
    """ws/orders/<public_id>/: accepted for the order's buyer and seller only, refused (4403)
    for anyone else, exactly as for an order that does not exist."""

    group_name = ""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=NOT_SIGNED_IN)
            return
        public_id = self.scope["url_route"]["kwargs"]["public_id"]
        if not await _is_participant(user, public_id):
            await self.close(code=NOT_A_PARTICIPANT)
            return
        self.group_name = order_group_name(public_id)
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if self.group_name:
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def receive_json(self, content, **kwargs):
        """Clients only listen; anything they send is ignored."""

    async def domain_event(self, message):
        # A nudge, not the event: the page renders what changed itself, in plain words.
        event = message["event"]
        await self.send_json({"eventId": event["eventId"], "eventType": event["eventType"]})
