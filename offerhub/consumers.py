"""WebSocket endpoint for live updates: a signed-in user receives the events that concern them."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from offerhub.subscribers import user_group_name


class UserEventsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.group_name = user_group_name(user.public_id)
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if getattr(self, "group_name", None):
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def receive_json(self, content, **kwargs):
        """Clients only listen; anything they send is ignored."""

    async def domain_event(self, message):
        await self.send_json(message["event"])
