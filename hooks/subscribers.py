"""Every committed domain event goes to the marketplace's webhook endpoints (API.md §14)."""

from hooks.models import WebhookEndpoint
from hooks.services import deliveries_create
from offerhub.events import event_subscriber

# No endpoint at all (the common case): the batch's query says so, and no call is made per event.
ENDPOINTS = WebhookEndpoint.objects.filter(enabled=True, deleted_at__isnull=True)


@event_subscriber("*", needed=ENDPOINTS)
def deliver_to_webhook_endpoints(event: dict) -> None:
    """Idempotent on eventId: one delivery per (endpoint, event), whatever the redeliveries."""
    deliveries_create(event=event)
