"""Event subscribers: code that reacts to outbox events after they are committed.

Subscribers register with type patterns (`order.*`, `*`, or exact types) and are called
with the DomainEvent dict. Delivery is at least once, per subscriber: each has a
cursor (SubscriberCursor, by its name) and sees every event after it in commit order
(`Event.position`); one that raises sees the same event again after a back-off, and after
OFFERHUB_EVENT_SUBSCRIBER_MAX_FAILURES failures the event is parked for it (EventDeadLetter)
and it goes on. A subscriber must be idempotent on `eventId`.

Delivery goes in passes, each one transaction: one SELECT … FOR UPDATE SKIP LOCKED claims
every due cursor no other worker holds (a held one is skipped, never waited for: its holder
looks again after releasing it), one query reads the batch of events after the lowest, each
subscriber gets its matching events of the batch, and one UPDATE advances the cursors that
moved. A subscriber's database writes commit with its cursor; each call that may write runs in
a savepoint, so a failure undoes only that call's writes and backs off only that subscriber;
what it starts with `transaction.on_commit` (a Celery task) starts once its cursor moved.
A subscriber declared `writes=False` touches no database and runs without a savepoint.
"""

import fnmatch
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Exists, Max, Q, QuerySet, Subquery
from django.utils import timezone

from offerhub.correlation import in_task_var
from offerhub.locks import after_locks_released
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
    patterns: tuple[str, ...]
    func: Subscriber
    writes: bool = True  # False: it touches no database (a push), so no savepoint around it
    needed: QuerySet | None = None  # empty: nothing to do with any event (checked with the batch)
    batch: bool = False  # called once per pass with the list of its events (in position order)

    def matches(self, event_type: str) -> bool:
        return any(event_type_matches(pattern, event_type) for pattern in self.patterns)


_subscribers: dict[str, Registration] = {}


def event_subscriber(
    *patterns: str, name: str = "", writes: bool = True, needed: QuerySet | None = None, batch: bool = False
) -> Callable[[Subscriber], Subscriber]:
    """Register `func` for events whose type matches one of `patterns`. `name` keys its cursor
    and dead letters (default module.function): renaming a subscriber starts a new cursor.
    `writes=False` declares that it touches no database (a channel-layer push): its calls then
    run without a savepoint of their own. `needed` is a query that finds no row when the
    subscriber would do nothing with any event (e.g. no webhook endpoint exists): it is checked
    within the query that reads each batch, and when empty the cursor moves past the batch's
    events without a call. `batch=True`: `func` takes the list of its events of a pass (one
    call, so its reads and writes can be one query each); after a failure they are handed to it
    one at a time (a list of one), each in a savepoint, to find the one that fails."""
    if batch and not writes:
        raise ValueError("a batch subscriber is one that writes")

    def register(func: Subscriber) -> Subscriber:
        key = (name or f"{func.__module__}.{func.__qualname__}")[:200]
        _subscribers[key] = Registration(
            name=key, patterns=patterns, func=func, writes=writes, needed=needed, batch=batch
        )
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
    created by the statement that positions a batch, at the end before it: they start with it."""
    return len(_sequence_batch(batch_size))


def _sequence_batch(batch_size: int) -> list[Event]:
    """events_sequence's work; returns the events it positioned, in position order (the
    statement that positions them returns them, so a delivery right after need not read them)."""
    with transaction.atomic():
        if connection.vendor != "postgresql":
            _cursors_ensure()
            positioned = _sequence_portably(batch_size)
            if positioned:
                transaction.on_commit(_sequenced_notify, robust=True)
            return positioned
        # One statement (the function of migration offerhub 0006): the lock, taken only when an
        # event waits for a position, then, seeing every position committed before it, the cursors
        # of newly registered subscribers (at the end before this batch: they start with it) and
        # the positions, returning the events positioned.
        positioned = list(
            Event.objects.raw(
                "SELECT * FROM offerhub_events_sequence(%s, %s::varchar[], %s)",
                [SEQUENCER_LOCK, sorted(_subscribers), batch_size],
            )
        )
        if positioned:
            transaction.on_commit(_sequenced_notify, robust=True)  # once the positions are visible
        return sorted(positioned, key=lambda event: event.position)


def _sequence_portably(batch_size: int) -> list[Event]:
    """SQLite (`make run` only): one writer at a time is the database's own rule, so the
    sequencer needs no lock of its own; one UPDATE per event is fine at a demo's scale."""
    start = events_end_position()
    todo = list(Event.objects.filter(position__isnull=True).order_by("id").values_list("id", flat=True)[:batch_size])
    now = timezone.now()
    for offset, pk in enumerate(todo, start=1):
        Event.objects.filter(pk=pk).update(position=start + offset, dispatched_at=now)
    return list(Event.objects.filter(pk__in=todo).order_by("position"))


def events_end_position() -> int:
    """The highest position given so far (0 before any)."""
    return Event.objects.aggregate(end=Max("position"))["end"] or 0


def _sequenced_notify() -> None:
    from offerhub.event_stream import events_sequenced_notify  # it imports this module

    events_sequenced_notify()


def _cursors_ensure() -> None:
    names = set(_subscribers)
    missing = names - set(SubscriberCursor.objects.filter(name__in=names).values_list("name", flat=True))
    if missing:
        end = events_end_position()
        SubscriberCursor.objects.bulk_create(
            [SubscriberCursor(name=name, position=end) for name in sorted(missing)], ignore_conflicts=True
        )


def events_deliver() -> int:
    """Sequence what committed, then run every subscriber that has events after its cursor
    (and whose back-off is over) until it has none; return the deliveries made.

    A cursor another worker holds is left to it: that worker looks again after releasing it,
    and sees what was positioned meanwhile."""
    # Only a delivery that ran outside any transaction saw everything committed before it: one
    # inside a transaction (eager tasks, a lease released in one) may miss rows still buffered or
    # be rolled back, so it must not spare the commit its own dispatch.
    counts_as_done = not transaction.get_connection().in_atomic_block
    fresh = _sequence_batch(SEQUENCE_BATCH)
    if len(fresh) == SEQUENCE_BATCH:  # a backlog: position all of it, then read as usual
        while len(_sequence_batch(SEQUENCE_BATCH)) == SEQUENCE_BATCH:
            pass
        fresh = []
    delivered, stopped = 0, set()
    while True:
        count, failed = _deliver_pass(names=[name for name in _subscribers if name not in stopped], fresh=fresh)
        fresh = []
        if count is None:
            if counts_as_done:
                _thread_delivery.completed += 1
            return delivered
        delivered += count
        stopped |= failed  # failed just now: backing off, not again in this call


class _ThreadDelivery(threading.local):
    """On this thread: how many events_deliver runs completed, and how many had when it last
    published an event. A run that completed since then started after that event's commit
    (on one thread a delivery cannot start between a publish and its commit, or sees the
    uncommitted event when it runs inside that transaction), so it sequenced the event and
    handed it to every due cursor no other worker held: a dispatch task would do nothing more."""

    completed = 0
    at_last_publish = 0


_thread_delivery = _ThreadDelivery()


def _deliver_pass(
    *, names: list[str], fresh: list[Event], failure: "_RedoCarefully | None" = None
) -> tuple[int | None, set[str]]:
    """One transaction: claim every due cursor with events after it that no other worker holds
    (one SELECT … FOR UPDATE SKIP LOCKED, which also asks each subscriber's `needed` query), take
    one batch of events after the lowest, run each subscriber on its events, and advance the
    cursors that moved (one UPDATE). The batch is `fresh` (the events this worker just
    positioned) when it starts right after the lowest cursor, else one read. Returns (the
    deliveries made, or None when nothing was due; the subscribers that failed).

    Writing subscribers run without a savepoint each (two statements saved per call); when one
    fails, the pass is rolled back and run again with them (see _RedoCarefully)."""
    run = _PassRun(careful=failure is not None, failure=failure)
    try:
        return _deliver_pass_run(names=names, fresh=fresh, run=run)
    except _RedoCarefully as redo:
        logger.exception("event subscriber %s failed on %s", redo.name, redo.event_id, exc_info=redo.error)
        return _deliver_pass(names=names, fresh=fresh, failure=redo)


def _deliver_pass_run(*, names: list[str], fresh: list[Event], run: "_PassRun") -> tuple[int | None, set[str]]:
    with transaction.atomic():
        end = Event.objects.filter(position__isnull=False).order_by("-position").values("position")[:1]
        checks = {f"needed_{n}": Exists(r.needed) for n, r in enumerate(_subscribers.values()) if r.needed is not None}
        cursors = list(
            SubscriberCursor.objects.select_for_update(skip_locked=True)
            .filter(
                Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now()),
                name__in=names,
                position__lt=Subquery(end),
            )
            .annotate(**checks)  # the same for every row: one look per pass, in this query
            .order_by("name")
        )
        if not cursors:
            return None, set()
        low = min(state.position for state in cursors)
        if fresh and fresh[0].position == low + 1:
            events = fresh[:DELIVERY_BATCH]  # what every claimed cursor needs next, already in hand
        else:
            events = list(Event.objects.filter(position__gt=low).order_by("position")[:DELIVERY_BATCH])
        if not events:
            return None, set()  # reaped meanwhile: nothing to hand
        numbers = {name: n for n, name in enumerate(_subscribers)}
        delivered, failed, moved = 0, set(), []
        for state in cursors:
            registration = _subscribers[state.name]
            start = state.position
            needed = getattr(state, f"needed_{numbers[state.name]}", True)
            count, ok = _subscriber_run(registration, state=state, events=events, needed=needed, run=run)
            delivered += count
            if not ok:
                failed.add(state.name)
            if not ok or state.position != start:
                moved.append(state)
        if moved:
            now = timezone.now()
            for state in moved:
                state.updated_at = now
            fields = ["position", "failures", "next_attempt_at", "last_error", "updated_at"]
            SubscriberCursor.objects.bulk_update(moved, fields)
        return delivered, failed


class _RedoCarefully(Exception):
    """A writing subscriber failed in a pass run without savepoints: its writes may be half
    done, so the pass is rolled back and run again with a savepoint around each writing call.
    What the first run learnt comes along: the failure (recorded, not asked for again) and
    the pushes made (a subscriber that touches no database is not called twice)."""

    def __init__(self, *, name: str, event_id: str, error: Exception, pushed: set[tuple[str, str]]):
        super().__init__(name, event_id)
        self.name, self.event_id, self.error, self.pushed = name, event_id, error, pushed


@dataclass
class _PassRun:
    """How a pass calls subscribers: `careful` (after a failure) wraps each writing call in a
    savepoint; otherwise none, and a failure redoes the pass carefully."""

    careful: bool = False
    failure: _RedoCarefully | None = None
    pushed: set = None  # (subscriber, eventId) handed to a subscriber that writes=False

    def __post_init__(self):
        self.pushed = set(self.failure.pushed) if self.failure else set()


def _subscriber_run(
    registration: Registration, *, state: SubscriberCursor, events: list[Event], needed: bool, run: _PassRun
) -> tuple[int, bool]:
    """Hand one subscriber the events of the batch after its cursor that match (none when it is
    not `needed`), in position order, moving `state` past each one it took or that does not
    concern it. Returns (how many it took, False when it failed now and backs off)."""
    if registration.batch and not run.careful:
        todo = [event for event in events if event.position > state.position]
        taken = [event for event in todo if needed and registration.matches(event.type)]
        if taken:
            try:
                registration.func([event.as_domain_event() for event in taken])
            except Exception as error:  # redone carefully: one event at a time, to find the one
                raise _RedoCarefully(name=state.name, event_id="", error=error, pushed=run.pushed) from error
        if todo:
            state.position, state.failures, state.next_attempt_at, state.last_error = todo[-1].position, 0, None, ""
        return len(taken), True
    delivered = 0
    for event in events:
        if event.position <= state.position:
            continue  # taken already: this cursor is ahead of the batch's start
        if needed and registration.matches(event.type):
            failure = run.failure
            if (
                failure is not None
                and (failure.name, failure.event_id) == (state.name, event.event_id)
                and not isinstance(failure.error, DatabaseError)
            ):
                # Not asked twice. A database error may be another writer's (one that swallowed its
                # own error left the transaction aborted for the next): that one is asked again.
                return delivered, _failure_record(state, event=event, error=failure.error)
            try:
                _call(registration, event, run=run, name=state.name)
            except _RedoCarefully:
                raise
            except Exception as error:
                if registration.writes and not run.careful:
                    raise _RedoCarefully(
                        name=state.name, event_id=event.event_id, error=error, pushed=run.pushed
                    ) from error
                logger.exception("event subscriber %s failed on %s", state.name, event)
                return delivered, _failure_record(state, event=event, error=error)
            delivered += 1
        state.position, state.failures, state.next_attempt_at, state.last_error = event.position, 0, None, ""
    return delivered, True


def _call(registration: Registration, event: Event, *, run: _PassRun, name: str) -> None:
    if not registration.writes:
        if (name, event.event_id) not in run.pushed:  # pushed already by a run of this pass undone since
            registration.func(event.as_domain_event())
            run.pushed.add((name, event.event_id))
    elif run.careful:
        with transaction.atomic():  # a savepoint: a failure undoes only this call's writes
            _handed(registration, event)
    else:
        _handed(registration, event)


def _handed(registration: Registration, event: Event) -> None:
    """Hand one event to the subscriber (a list of one to a batch subscriber)."""
    domain_event = event.as_domain_event()
    registration.func([domain_event] if registration.batch else domain_event)


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
                _handed(registration, letter.event)
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
    """Deliver when the current transaction commits, at most once per transaction (a rolled-back
    savepoint drops its hook, and a later event registers again): through one delivery task
    from a request, right after the commit when a Celery task wrote the events (it is already
    on a worker: one more task would only add a round trip through the broker)."""
    _thread_delivery.at_last_publish = _thread_delivery.completed
    conn = transaction.get_connection()
    if conn.in_atomic_block and any(func is _dispatch_on_commit for _, func, _ in conn.run_on_commit):
        return
    # robust: a broker outage must not turn a committed request into an error; the sweeper
    # (events_dispatch_pending, every minute) delivers what no task did.
    transaction.on_commit(_dispatch_on_commit, robust=True)


def _deliver_here() -> None:
    try:
        events_deliver()
    except Exception:  # the task's own work is done and committed; the sweeper delivers later
        logger.exception("delivering events after a task's commit failed")


def _dispatch_on_commit() -> None:
    if _thread_delivery.completed > _thread_delivery.at_last_publish:
        # Delivered already: in process (eager tasks), the task this commit started (an escrow's
        # drive) delivered everything once it committed. No task when nothing is due.
        return
    if in_task_var.get():
        # Not while this task holds an escrow's or an account's lock: after it lets go.
        after_locks_released(_deliver_here)
        return
    from offerhub.tasks import events_dispatch  # the tasks module imports this one

    events_dispatch.delay()
