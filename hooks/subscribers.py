"""Every committed domain event goes to the marketplace's webhook endpoints (API.md §14)."""

from hooks.services import deliveries_create
from offerhub.events import event_subscriber


@event_subscriber("*")
def deliver_to_webhook_endpoints(event: dict) -> None:
    """Idempotent on eventId: one delivery per (endpoint, event), whatever the redeliveries."""
    deliveries_create(event=event)
