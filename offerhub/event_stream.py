"""The event stream's moving parts (API.md §12): filters, resume cursors, the per-process hub.

Events reach a stream in commit order (`Event.position`, given after commit by the sequencer
of offerhub.events). A stream first registers with its process's hub, so that it buffers every
event the hub reads from then on, then replays from the database what came after its cursor,
then plays the buffer. Positions of newly sequenced events are dense, so a stream that finds
a hole between what it has examined and the next buffered event (or that fell too far behind
and dropped its buffer) replays the missing stretch from the database again: nothing is
skipped and nothing is sent twice, whatever the order in which the hub and the replay ran.

One hub per event loop (one per server process) reads each newly positioned event once, for
every stream: it is woken by a Redis message that the sequencer publishes after commit (by
a direct call in embedded mode, where the sequencer runs in the web process), and looks
anyway every OFFERHUB_SSE_POLL_SECONDS in case a message was lost. Streams never hold a thread:
their few database reads go through a small shared pool of threads (OFFERHUB_SSE_DB_THREADS).
"""

import asyncio
import contextlib
import contextvars
import json
import logging
import re
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.db.models import Min, Q

from offerhub.errors import ServiceError
from offerhub.events import event_type_matches, events_end_position
from offerhub.models import Event
from offerhub.redis_clients import redis_client

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "offerhub:events:sequenced"
REVOKED_CHANNEL = "offerhub:api-keys:revoked"
REPLAY_PAGE = 200
HUB_PAGE = 500
STREAM_BUFFER_MAX = 1000  # frames a slow stream may have waiting before it drops them and replays
RESOURCES = ("User", "Balance", "Wallet", "TopUp", "Order", "Dispute", "Withdrawal")
_RESOURCE_BY_LOWER = {name.lower(): name for name in RESOURCES}
_TYPE_PATTERN = re.compile(r"^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?)$")
_USER_ID = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_EVENT_ID = re.compile(r"^evt_[A-Za-z0-9]{1,64}$")
TYPES_MAX = 50
REDIS_CONNECTIONS = 8  # per server process, for the stream cap's leases
USER_ID_FIELDS = ("userId", "buyerId", "sellerId")


def _field_error(field_name: str, message: str) -> ServiceError:
    from offerhub.api.errors import validation_error  # the API package imports the models

    return validation_error([(field_name, message)])


# --- Frames and filters ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One event as the stream sends it, with what the filters look at."""

    position: int
    type: str
    aggregate_type: str
    marketplace_id: str
    user_ids: frozenset[str]
    data: bytes


def frame_from_event(event: Event) -> Frame:
    domain = event.as_domain_event()
    text = json.dumps(domain, separators=(",", ":"), ensure_ascii=False)  # one line: newlines are escaped
    payload = event.payload if isinstance(event.payload, dict) else {}
    user_ids = {event.user_id} | {payload[key] for key in USER_ID_FIELDS if isinstance(payload.get(key), str)}
    return Frame(
        position=event.position,
        type=event.type,
        aggregate_type=event.aggregate_type,
        marketplace_id=event.marketplace_id,
        user_ids=frozenset(user_ids - {""}),
        data=f"id: {event.event_id}\nevent: {event.type}\ndata: {text}\n\n".encode(),
    )


@dataclass(frozen=True)
class StreamFilter:
    """What one stream asks for (`types`, `resources`, `user_id`) and may see (its key's tenant)."""

    types: tuple[str, ...] = ()
    resources: frozenset[str] = frozenset()
    user_id: str = ""
    marketplace_id: str = ""

    def matches(self, frame: Frame) -> bool:
        if self.marketplace_id and frame.marketplace_id != self.marketplace_id:
            return False
        if self.resources and frame.aggregate_type not in self.resources:
            return False
        if self.user_id and self.user_id not in frame.user_ids:
            return False
        return not self.types or any(event_type_matches(pattern, frame.type) for pattern in self.types)

    def query(self) -> Q:
        """The same test in SQL, for replays."""
        condition = Q()
        if self.marketplace_id:
            condition &= Q(marketplace_id=self.marketplace_id)
        if self.resources:
            condition &= Q(aggregate_type__in=sorted(self.resources))
        if self.user_id:
            by_user = Q(user_id=self.user_id)
            for key in USER_ID_FIELDS:
                by_user |= Q(**{f"payload__{key}": self.user_id})
            condition &= by_user
        if self.types and "*" not in self.types:
            by_type = Q()
            for pattern in self.types:
                by_type |= Q(type__startswith=pattern[:-1]) if pattern.endswith(".*") else Q(type=pattern)
            condition &= by_type
        return condition


def _listed(values: list[str]) -> list[str]:
    """Comma-separated or repeated query values, as one list without blanks."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def stream_filter_parse(*, query: dict[str, list[str]], marketplace_id: str) -> StreamFilter:
    """The stream's filters from its query string; a bad value is a 400 naming its parameter."""
    types = _listed(query.get("types", []))
    if len(types) > TYPES_MAX:
        raise _field_error("types", f"at most {TYPES_MAX} event types")
    for pattern in types:
        if len(pattern) > 100 or not _TYPE_PATTERN.match(pattern):
            raise _field_error("types", f"'{pattern[:100]}' is not an event type, a prefix like order.* or *")
    resources = set()
    for name in _listed(query.get("resources", []) + query.get("resourceTypes", [])):
        canonical = _RESOURCE_BY_LOWER.get(name.lower())
        if canonical is None:
            raise _field_error("resources", f"'{name[:50]}' is not one of {', '.join(RESOURCES)}")
        resources.add(canonical)
    user_ids = query.get("user_id", [])
    if len(user_ids) > 1:
        raise _field_error("user_id", "give one user id")
    user_id = user_ids[0].strip() if user_ids else ""
    if user_id and not _USER_ID.match(user_id):
        raise _field_error("user_id", "not a user id")
    return StreamFilter(
        types=tuple(dict.fromkeys(types)),
        resources=frozenset(resources),
        user_id=user_id,
        marketplace_id=marketplace_id,
    )


# --- Cursors ------------------------------------------------------------------------------


def _timestamp_parse(value: str) -> datetime | None:
    if not value.isascii():
        return None
    try:
        if value.isdigit():  # epoch milliseconds
            return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
        moment = datetime.fromisoformat(value)
    except (ValueError, OverflowError, OSError):  # not a date, or not one the calendar has
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def stream_start_position(*, cursor: str, field_name: str) -> int:
    """The position after which a stream starts (synchronous: call it off the event loop).

    No cursor: what happens from now on. An `evt_…` id: strictly after that event in commit
    order; one no longer retained (or never issued) replays from the oldest retained event. A
    timestamp (ISO-8601 or epoch milliseconds, the original's ids): from the first event, in
    commit order, that occurred after it."""
    if not cursor:
        return events_end_position()
    if len(cursor) > 100 or "\x00" in cursor:
        raise _field_error(field_name, "not an event id or a timestamp")
    if cursor.startswith("evt_"):
        if not _EVENT_ID.match(cursor):
            raise _field_error(field_name, "not an event id")
        found = Event.objects.filter(event_id=cursor).values_list("position", flat=True).first()
        if found is not None:
            return found
        if Event.objects.filter(event_id=cursor).exists():  # committed, not positioned yet
            return events_end_position()
        return 0
    moment = _timestamp_parse(cursor)
    if moment is None:
        raise _field_error(field_name, "not an event id, an ISO-8601 timestamp or epoch milliseconds")
    first = Event.objects.filter(occurred_at__gt=moment, position__isnull=False).aggregate(first=Min("position"))
    return first["first"] - 1 if first["first"] is not None else events_end_position()


def stream_replay_page(*, after: int, stream_filter: StreamFilter) -> tuple[list[Frame], int, bool]:
    """Matching events after `after`; the position examined up to; whether more may follow.
    Examined: the last event of a full page, else the end of the sequence as it stood before
    the read (positions are a dense prefix at any moment: nothing at or below it comes later)."""
    end = events_end_position()
    rows = list(
        Event.objects.filter(stream_filter.query(), position__gt=after, position__lte=end).order_by("position")[
            :REPLAY_PAGE
        ]
    )
    frames = [frame_from_event(row) for row in rows]
    if len(rows) == REPLAY_PAGE:
        return frames, rows[-1].position, True
    return frames, max(end, after), False


def _frames_after(after: int) -> list[Frame]:
    rows = Event.objects.filter(position__gt=after).order_by("position")[:HUB_PAGE]
    return [frame_from_event(row) for row in rows]


# --- Database calls off the event loop ----------------------------------------------------

_executors: dict[bool, ThreadPoolExecutor] = {}
_executor_lock = threading.Lock()


def _database_executor(*, replay: bool) -> ThreadPoolExecutor:
    """Replays (long reads, from a client's cursor) get threads of their own, so that a storm of
    reconnections never delays the hub's reads of new events or the opening checks."""
    with _executor_lock:
        if replay not in _executors:
            total = max(settings.OFFERHUB_SSE_DB_THREADS, 2)
            threads = total // 2 if replay else total - total // 2
            _executors[replay] = ThreadPoolExecutor(
                max_workers=threads, thread_name_prefix="sse-replay" if replay else "sse-db"
            )
        return _executors[replay]


def connections_released_after(func: Callable) -> Callable:
    """`func` for a shared database thread: its connection goes back after each call."""

    def call(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()  # back to the pool (or closed), as at the end of a request

    return call


async def database(func: Callable, /, *args, replay: bool = False, **kwargs):
    """Run `func` on the streams' shared database threads (`replay`: those for replays)."""
    executor = _database_executor(replay=replay)
    return await sync_to_async(connections_released_after(func), thread_sensitive=False, executor=executor)(
        *args, **kwargs
    )


# --- The hub ------------------------------------------------------------------------------


@dataclass(eq=False)
class Subscription:
    """A stream's side of the hub: the frames read since it joined, waiting to be played."""

    key_id: str = ""
    buffer: deque = field(default_factory=deque)
    overflowed: bool = False
    revoked: bool = False  # its API key was revoked: the stream ends
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, frames: list[Frame]) -> None:
        if self.overflowed:
            return
        if len(self.buffer) + len(frames) > STREAM_BUFFER_MAX:
            self.buffer.clear()
            self.overflowed = True  # it replays from the database what it dropped
        else:
            self.buffer.extend(frames)
        self.ready.set()


class EventHub:
    """Reads newly positioned events once per process and offers them to every subscription."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.subscriptions: set[Subscription] = set()
        self.high_water: int | None = None
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.local_leases: dict[str, set[str]] = {}  # embedded mode's stream cap
        self._redis = None

    def redis_client(self):
        """This loop's Redis client (None in embedded mode)."""
        if not settings.REDIS_URL:
            return None
        if self._redis is None:
            import redis.asyncio as aioredis

            # Bounded: a burst of streams opening or closing waits for a connection instead of
            # opening one each (and leaving them idle afterwards).
            pool = aioredis.BlockingConnectionPool.from_url(
                settings.REDIS_URL,
                max_connections=REDIS_CONNECTIONS,
                timeout=5,
                socket_connect_timeout=2,
                socket_timeout=5,
            )
            self._redis = aioredis.Redis(connection_pool=pool)
        return self._redis

    def join(self, *, key_id: str = "") -> Subscription:
        subscription = Subscription(key_id=key_id)
        self.subscriptions.add(subscription)
        if self.task is None:  # in a context of its own, not the first stream's (its request id)
            self.task = self.loop.create_task(self._run(), context=contextvars.Context())
        return subscription

    def wake_up(self) -> None:
        self.wake.set()

    def revoke(self, key_id: str) -> None:
        """End the streams of a revoked key (or of its tokens) now, not at their next re-check."""
        for subscription in self.subscriptions:
            if subscription.key_id == key_id:
                subscription.revoked = True
                subscription.ready.set()

    def leave(self, subscription: Subscription) -> None:
        self.subscriptions.discard(subscription)
        if not self.subscriptions:
            self.wake.set()  # the hub notices it has no one left and stops

    async def _run(self) -> None:
        listener = self.loop.create_task(self._listen()) if settings.REDIS_URL else None
        try:
            while self.subscriptions:
                try:
                    await self._read()
                except Exception:
                    logger.warning("event stream hub: reading new events failed; trying again", exc_info=True)
                    await asyncio.sleep(1)
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(settings.OFFERHUB_SSE_POLL_SECONDS):
                        await self.wake.wait()
                self.wake.clear()
        finally:
            if listener is not None:
                listener.cancel()
            # No await between the loop's test and this: a stream joining later starts a new run.
            self.task, self.high_water = None, None

    async def _read(self) -> None:
        if self.high_water is None:
            self.high_water = await database(events_end_position)
        while True:
            frames = await database(_frames_after, self.high_water)
            if frames:
                self.high_water = frames[-1].position
                for subscription in list(self.subscriptions):
                    subscription.offer(frames)
            if len(frames) < HUB_PAGE:
                return

    async def _listen(self) -> None:
        """Redis pub/sub: the sequencer's "positioned up to N" wakes the hub at once."""
        import redis.asyncio as aioredis

        while True:
            client = aioredis.Redis.from_url(settings.REDIS_URL)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(NOTIFY_CHANNEL, REVOKED_CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        if message.get("channel") == REVOKED_CHANNEL.encode():
                            self.revoke(message["data"].decode())
                        else:
                            self.wake.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("event stream hub: Redis notifications lost; polling until they are back", exc_info=True)
                await asyncio.sleep(2)
            finally:
                await client.aclose()


_hubs: dict[asyncio.AbstractEventLoop, EventHub] = {}
_hubs_lock = threading.Lock()


def event_hub() -> EventHub:
    """The running loop's hub (one per server process; tests run several loops)."""
    loop = asyncio.get_running_loop()
    with _hubs_lock:
        for stale in [known for known in _hubs if known.is_closed()]:
            del _hubs[stale]
        hub = _hubs.get(loop)
        if hub is None:
            hub = _hubs[loop] = EventHub(loop)
        return hub


def _publish(channel: str, message: str) -> None:
    if not settings.REDIS_URL:
        return
    try:
        redis_client().publish(channel, message)
    except Exception:
        logger.warning("event stream: could not publish on %s", channel, exc_info=True)


def _hubs_call(method: str, *args) -> None:
    with _hubs_lock:
        hubs = list(_hubs.values())
    for hub in hubs:
        if hub.task is not None and not hub.loop.is_closed():
            hub.loop.call_soon_threadsafe(getattr(hub, method), *args)


def event_hubs_wake() -> None:
    """Wake this process's hubs (any thread): events were positioned here."""
    _hubs_call("wake_up")


def events_sequenced_notify() -> None:
    """After the sequencer committed new positions: wake the hubs of every web node (Redis
    pub/sub) and of this process. Best effort: a hub that hears nothing looks by itself soon."""
    event_hubs_wake()
    _publish(NOTIFY_CHANNEL, "1")


def api_key_revoked_notify(*, key_id: str) -> None:
    """After a key's revocation committed: its streams end on every web node."""
    _hubs_call("revoke", key_id)
    _publish(REVOKED_CHANNEL, key_id)
