from django.urls import path

from marketplace.order_consumers import OrderEventsConsumer
from offerhub.consumers import UserEventsConsumer

websocket_urlpatterns = [
    path("ws/events/", UserEventsConsumer.as_asgi()),
    path("ws/orders/<str:public_id>/", OrderEventsConsumer.as_asgi()),
]
