from django.urls import re_path

from disputes import api

urlpatterns = [
    re_path(
        r"^orders/(?P<order_id>[^/]+)/resolution/dispute/?$",
        api.OrderDisputeOpenView.as_view(),
        name="order-dispute",
    ),
    re_path(r"^disputes/?$", api.DisputeListView.as_view(), name="disputes"),
    re_path(r"^disputes/(?P<dispute_id>[^/]+)/?$", api.DisputeDetailView.as_view(), name="dispute"),
    re_path(r"^disputes/(?P<dispute_id>[^/]+)/assign/?$", api.DisputeAssignView.as_view(), name="dispute-assign"),
    re_path(r"^disputes/(?P<dispute_id>[^/]+)/resolve/?$", api.DisputeResolveView.as_view(), name="dispute-resolve"),
]
