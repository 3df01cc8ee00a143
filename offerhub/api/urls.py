"""Routes under /api/v1. Paths have no trailing slash; a trailing slash is accepted too,
so that APPEND_SLASH never turns a POST into a redirect."""

from django.urls import re_path

from offerhub.api import views, webhooks

app_name = "api"


def route(pattern: str, view, name: str):
    return re_path(rf"^{pattern}/?$", view, name=name)


urlpatterns = [
    route("health", views.HealthView.as_view(), "health"),
    route("health/detailed", views.HealthDetailedView.as_view(), "health-detailed"),
    route("config", views.ConfigView.as_view(), "config"),
    route("auth/api-keys", views.ApiKeyListCreateView.as_view(), "api-keys"),
    route(r"auth/api-keys/(?P<key_id>[^/]+)", views.ApiKeyRevokeView.as_view(), "api-key"),
    route(r"auth/api-keys/(?P<key_id>[^/]+)/token", views.ApiTokenMintView.as_view(), "api-key-token"),
    route("auth/me", views.MeView.as_view(), "me"),
    route("me", views.MeView.as_view(), "me-alias"),
    route("events", views.EventStreamView.as_view(), "events"),
    route("audit/logs", views.AuditLogListView.as_view(), "audit-logs"),
    route(r"openapi\.json", views.OpenApiSchemaView.as_view(), "openapi"),
    route("docs", views.ApiDocsView.as_view(url_name="api:openapi"), "docs"),
    route("webhooks/airtm", webhooks.AirtmWebhookView.as_view(), "webhook-airtm"),
    route("webhooks/trustless-work", webhooks.TrustlessWorkWebhookView.as_view(), "webhook-trustless-work"),
    # Must stay last: unknown paths answer the NOT_FOUND envelope instead of an HTML 404.
    re_path(r"^.*$", views.NotFoundView.as_view(), name="not-found"),
]
