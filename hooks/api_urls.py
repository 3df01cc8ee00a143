"""Routes of the webhook endpoints API under /api/v1 (API.md §14); a trailing slash is accepted too."""

from django.urls import re_path

from hooks import api

urlpatterns = [
    re_path(r"^webhook-endpoints/?$", api.WebhookEndpointListCreateView.as_view(), name="webhook-endpoints"),
    re_path(
        r"^webhook-endpoints/(?P<endpoint_id>[^/]+)/?$",
        api.WebhookEndpointDetailView.as_view(),
        name="webhook-endpoint",
    ),
    re_path(
        r"^webhook-endpoints/(?P<endpoint_id>[^/]+)/deliveries/?$",
        api.WebhookDeliveryListView.as_view(),
        name="webhook-endpoint-deliveries",
    ),
]
