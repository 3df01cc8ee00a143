"""Event subscribers: code that reacts to outbox events after they are committed.

Subscribers register with a type pattern (`order.*`, `*`, or an exact type) and are
called with the DomainEvent dict. Delivery is at least once, per subscriber: each has a
cursor (SubscriberCursor, by its name) and sees every event after it in commit order
(`Event.position`); one that raises sees the same event again after a back-off, and after
OFFERHUB_EVENT_SUBSCRIBER_MAX_FAILURES failures the event is parked for it (EventDeadLetter)
and it goes on. A subscriber must be idempotent on `eventId`.

A subscriber runs inside the transaction that advances its cursor: its database writes
commit with the cursor (or roll back with a failure, in a savepoint), and what it starts
with `transaction.on_commit` (a Celery task) starts once that cursor moved.
"""

import fnmatch
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Q, Subquery
from django.utils import timezone

from offerhub.models import Event, EventDeadLetter, SubscriberCursor

logger = logging.getLogger(__name__)

Subscriber = Callable[[dict], None]

# pg_advisory_xact_lock key of the sequencer ("OHSEQ" in ASCII): one positions at a time.
SEQUENCER_LOCK = 0x4F48534551
SEQUENCE_BATCH = 1000
DELIVERY_BATCH = 100
MAX_BACKOFF = timedelta(hours=1)


@dataclass(frozen=True)
class Registration:
    name: str
    pattern: str
    func: Subscriber
    writes: bool = True  # False: it writes nothing to the database (a push), so no savepoint around it


_subscribers: dict[str, Registration] = {}


def event_subscriber(pattern: str, *, name: str = "", writes: bool = True) -> Callable[[Subscriber], Subscriber]:
    """Register `func` for events whose type matches `pattern`. `name` keys its cursor and
    dead letters (default module.function): renaming a subscriber starts a new cursor.
    `writes=False` declares that it writes nothing to the database (a channel-layer push): its
    calls then run without a savepoint of their own (two statements fewer per event)."""

    def register(func: Subscriber) -> Subscriber:
        key = (name or f"{func.__module__}.{func.__qualname__}")[:200]
        _subscribers[key] = Registration(name=key, pattern=pattern, func=func, writes=writes)
        return func

    return register


def event_subscribers() -> list[Registration]:
    return list(_subscribers.values())


def event_type_matches(pattern: str, event_type: str) -> bool:
    return fnmatch.fnmatchcase(event_type, pattern)


def _max_failures() -> int:
    return settings.OFFERHUB_EVENT_SUBSCRIBER_MAX_FAILURES


def _backoff(failures: int) -> timedelta:
    base = settings.OFFERHUB_EVENT_RETRY_BASE_SECONDS
    return min(timedelta(seconds=base * 2 ** (failures - 1)), MAX_BACKOFF)


def events_sequence(*, batch_size: int = SEQUENCE_BATCH) -> int:
    """Give committed events their commit-ordered `position`, in id order; return how many.

    One sequencer at a time (a transaction-scoped advisory lock), each in a short transaction
    of its own, so positions become visible in increasing order: an event that commits after
    a later-id one simply gets a later position. Cursors of newly registered subscribers are
    created first, at the current end, so they start with the events positioned now."""
    with transaction.atomic():
        if connection.vendor != "postgresql":
            _cursors_ensure()
            positioned = _sequence_portably(batch_size)
            if positioned:
                transaction.on_commit(_sequenced_notify, robust=True)
            return positioned
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEQUENCER_LOCK])
        _cursors_ensure()
        with connection.cursor() as cursor:
            cursor.execute(
                """
                UPDATE offerhub_event e SET position = n.position, dispatched_at = now()
                FROM (
                    SELECT id, (SELECT COALESCE(MAX(position), 0) FROM offerhub_event)
                               + row_number() OVER (ORDER BY id) AS position
                    FROM (SELECT id FROM offerhub_event WHERE position IS NULL ORDER BY id LIMIT %s) todo
                ) n
                WHERE e.id = n.id
                """,
                [batch_size],
            )
            positioned = cursor.rowcount
        if positioned:
            transaction.on_commit(_sequenced_notify, robust=True)  # once the positions are visible
        return positioned


def _sequence_portably(batch_size: int) -> int:
    """SQLite (`make run` only): one writer at a time is the database's own rule, so the
    sequencer needs no lock of its own; one UPDATE per event is fine at a demo's scale."""
    start = Event.objects.aggregate(end=Max("position"))["end"] or 0
    todo = list(Event.objects.filter(position__isnull=True).order_by("id").values_list("id", flat=True)[:batch_size])
    now = timezone.now()
    for offset, pk in enumerate(todo, start=1):
        Event.objects.filter(pk=pk).update(position=start + offset, dispatched_at=now)
    return len(todo)


def _sequenced_notify() -> None:
    from offerhub.event_stream import events_sequenced_notify  # it imports this module

    events_sequenced_notify()


def _cursors_ensure() -> None:
    names = set(_subscribers)
    missing = names - set(SubscriberCursor.objects.filter(name__in=names).values_list("name", flat=True))
    if missing:
        end = Event.objects.aggregate(end=Max("position"))["end"] or 0
        SubscriberCursor.objects.bulk_create(
            [SubscriberCursor(name=name, position=end) for name in sorted(missing)], ignore_conflicts=True
        )


def events_deliver() -> int:
    """Sequence what committed, then run every subscriber that has events after its cursor
    (and whose back-off is over) until it has none; return the deliveries made.

    Each pass reads the due cursors and one batch of events after the lowest of them, then
    claims each cursor in turn (SKIP LOCKED). A cursor another worker holds is left to it:
    that worker looks again after releasing it, and sees what was positioned meanwhile."""
    while events_sequence() == SEQUENCE_BATCH:
        pass
    delivered, busy = 0, set()
    while True:
        end = Event.objects.filter(position__isnull=False).order_by("-position").values("position")[:1]
        due = dict(
            SubscriberCursor.objects.filter(
                Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now()),
                name__in=[name for name in _subscribers if name not in busy],
                position__lt=Subquery(end),
            ).values_list("name", "position")
        )
        if not due:
            return delivered
        events = list(Event.objects.filter(position__gt=min(due.values())).order_by("position")[:DELIVERY_BATCH])
        for name in due:
            count, go_on = subscriber_deliver(name=name, events=events)
            delivered += count
            if not go_on:
                busy.add(name)  # held by another worker, or failed just now: not again in this call


def subscriber_deliver(*, name: str, events: list[Event] | None = None) -> tuple[int, bool]:
    """Hand subscriber `name` the events after its cursor, in position order: those of `events`
    (a batch read by the caller, in position order) or the next batch. Returns (how many it
    took, whether it may go on): not when another worker holds the cursor (SKIP LOCKED), it is
    backing off, or it failed now."""
    registration = _subscribers.get(name)
    if registration is None:
        return 0, False
    with transaction.atomic():
        state = (
            SubscriberCursor.objects.select_for_update(skip_locked=True)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now()), name=name)
            .first()
        )
        if state is None:
            return 0, False
        if not events:  # a caller's batch starts after the lowest due cursor, so it covers this one
            events = list(Event.objects.filter(position__gt=state.position).order_by("position")[:DELIVERY_BATCH])
        delivered, start = 0, state.position
        for event in events:
            if event.position <= start:
                continue  # taken already (another worker moved the cursor since the batch was read)
            if event_type_matches(registration.pattern, event.type):
                try:
                    if registration.writes:
                        with transaction.atomic():  # a savepoint: a failure undoes only this call's writes
                            registration.func(event.as_domain_event())
                    else:
                        registration.func(event.as_domain_event())
                except Exception as error:
                    logger.exception("event subscriber %s failed on %s", name, event)
                    go_on = _failure_record(state, event=event, error=error)
                    state.save()
                    return delivered, go_on
                delivered += 1
            state.position, state.failures, state.next_attempt_at, state.last_error = event.position, 0, None, ""
        if state.position != start:
            state.save()
        return delivered, True


def _failure_record(state: SubscriberCursor, *, event: Event, error: Exception) -> bool:
    """Back off, or park the event after too many failures (the cursor then moves past it)."""
    state.failures += 1
    state.last_error = f"{event.event_id}: {type(error).__name__}: {error}"[:2000]
    if state.failures < _max_failures():
        state.next_attempt_at = timezone.now() + _backoff(state.failures)
        return False
    EventDeadLetter.objects.update_or_create(
        subscriber=state.name,
        event=event,
        defaults={"failures": state.failures, "last_error": state.last_error, "resolved_at": None},
    )
    logger.error("event %s parked for subscriber %s after %s failures", event.event_id, state.name, state.failures)
    state.position, state.failures, state.next_attempt_at = event.position, 0, None
    return True


def event_dead_letter_retry(*, dead_letter: EventDeadLetter) -> bool:
    """Hand a parked event to its subscriber again; True once it took it (then resolved)."""
    registration = _subscribers.get(dead_letter.subscriber)
    with transaction.atomic():
        letter = EventDeadLetter.objects.select_for_update().select_related("event").get(pk=dead_letter.pk)
        if letter.resolved_at is not None:
            return True
        letter.retried_at = timezone.now()
        if registration is None:
            letter.last_error = "no subscriber of this name is registered any more"
            letter.save(update_fields=["retried_at", "last_error"])
            return False
        try:
            with transaction.atomic():
                registration.func(letter.event.as_domain_event())
        except Exception as error:
            logger.exception("dead-letter retry of %s for %s failed", letter.event.event_id, letter.subscriber)
            letter.failures += 1
            letter.last_error = f"{type(error).__name__}: {error}"[:2000]
            letter.save(update_fields=["retried_at", "failures", "last_error"])
            return False
        letter.resolved_at = letter.retried_at
        letter.save(update_fields=["retried_at", "resolved_at"])
        return True


@transaction.atomic
def event_dead_letter_retry_request(*, dead_letter: EventDeadLetter, actor_id: str) -> None:
    """Support asks for a parked event to be handed to its subscriber again (audited; a task
    does it after commit)."""
    from offerhub.services import audit_record  # services imports this module
    from offerhub.tasks import event_dead_letter_retry_task

    audit_record(
        action="event.dead_letter_retry_requested",
        resource_type="EventDeadLetter",
        resource_id=str(dead_letter.pk),
        actor_type="SUPPORT",
        actor_id=actor_id,
        payload_after={"subscriber": dead_letter.subscriber, "eventId": dead_letter.event.event_id},
    )
    pk = dead_letter.pk
    transaction.on_commit(lambda: event_dead_letter_retry_task.delay(pk), robust=True)


def event_dispatch_hook_register() -> None:
    """Queue one delivery task when the current transaction commits, at most once per
    transaction (a rolled-back savepoint drops its hook, and a later event registers again)."""
    conn = transaction.get_connection()
    if conn.in_atomic_block and any(func is _dispatch_on_commit for _, func, _ in conn.run_on_commit):
        return
    # robust: a broker outage must not turn a committed request into an error; the sweeper
    # (events_dispatch_pending, every minute) delivers what no task did.
    transaction.on_commit(_dispatch_on_commit, robust=True)


def _dispatch_on_commit() -> None:
    from offerhub.tasks import events_dispatch  # the tasks module imports this one

    events_dispatch.delay()
