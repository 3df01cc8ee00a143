"""Event subscribers: code that reacts to outbox events after they are committed.

Subscribers register with a type pattern (`order.*`, `*`, or an exact type) and are
called with the DomainEvent dict. Delivery is at least once: a subscriber must be
idempotent on `eventId`.
"""

import fnmatch
import logging
from collections.abc import Callable

from django.utils import timezone

from offerhub.models import Event

logger = logging.getLogger(__name__)

Subscriber = Callable[[dict], None]
_subscribers: list[tuple[str, Subscriber]] = []


def event_subscriber(pattern: str) -> Callable[[Subscriber], Subscriber]:
    def register(func: Subscriber) -> Subscriber:
        _subscribers.append((pattern, func))
        return func

    return register


def event_type_matches(pattern: str, event_type: str) -> bool:
    return fnmatch.fnmatchcase(event_type, pattern)


def event_dispatch(*, event: Event) -> None:
    """Hand one committed event to every matching subscriber, then mark it dispatched.

    One failing subscriber is logged and does not stop the others.
    """
    domain_event = event.as_domain_event()
    for pattern, subscriber in list(_subscribers):
        if not event_type_matches(pattern, event.type):
            continue
        try:
            subscriber(domain_event)
        except Exception:
            logger.exception("event subscriber %s failed on %s", getattr(subscriber, "__name__", subscriber), event)
    Event.objects.filter(pk=event.pk, dispatched_at__isnull=True).update(dispatched_at=timezone.now())
