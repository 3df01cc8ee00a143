from django.urls import re_path

from disputes import api

urlpatterns = [
    re_path(
        r"^orders/(?P<order_id>[^/]+)/resolution/dispute/?$",
        api.OrderDisputeOpenView.as_view(),
        name="order-dispute",
    ),
]
