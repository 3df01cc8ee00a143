"""Waiting for an order to change without polling: a notification after commit wakes the waiters.

Whatever settles, fails or moves an order (a provider step's outcome, an order saved) calls
`order_changed_notify` inside its transaction; once that transaction committed and the
lease locks held here are released, the order's id goes out on the Redis channel CHANNEL (to the
waiters of every web node), or straight to this process's waiters in embedded mode (no Redis:
one process). Each web process has one listener thread subscribed to the channel; it wakes the
waiters of the order named, however many there are. A waiter registers before it reads the
database (the listener wakes every waiter again each time it (re)subscribes, so nothing
committed before the subscription is missed) and re-reads on each wake-up; it also re-reads every
OFFERHUB_SYNC_WAIT_RECHECK_SECONDS, in case Redis was down or a message was lost.

Threads: a waiter in a thread (gunicorn, the backoffice) blocks on its own `threading.Event`;
a waiter on an event loop (uvicorn) on an `asyncio.Event`, holding no thread. Under ASGI an API
view defers its answer (`DeferredAnswer`): the request's thread returns once the step's intent
is committed, `deferred_answers` (around the Django application in offerhub.asgi) awaits the
outcome on the loop, and the final answer is made, stored for the Idempotency-Key and sent by a
few shared database threads (OFFERHUB_SYNC_WAIT_DB_THREADS).
"""

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.http import HttpResponse

from escrow.services import step_failed, step_settled
from offerhub.event_stream import connections_released_after
from offerhub.locks import after_locks_released
from offerhub.redis_clients import redis_client

logger = logging.getLogger(__name__)

CHANNEL = "offerhub:orders:changed"
SCOPE_KEY = "offerhub.deferred_answer"  # in an ASGI request's scope: where a view may defer its answer
RECONNECT_SECONDS = 1.0
# After a failed publish (Redis down or unreachable), commits skip publishing this long instead of
# each waiting for the connection timeout; waiters find their outcome by their re-check meanwhile.
PUBLISH_PAUSE_SECONDS = 5.0
_publish_paused_until = 0.0


# --- Publishing ---------------------------------------------------------------------------


def order_changed_notify(*, order_public_id: str) -> None:
    """Wake the order's waiters once the current transaction commits (now, outside one)."""
    if order_public_id:
        transaction.on_commit(lambda: _committed(order_public_id), robust=True)


_unsent = threading.local()


def _committed(order_public_id: str) -> None:
    if not hasattr(_unsent, "ids"):
        _unsent.ids = set()
    _unsent.ids.add(order_public_id)
    # Not while this thread holds an escrow's or an account's lease lock: after it lets go.
    after_locks_released(_send)


def _send() -> None:
    ids = sorted(getattr(_unsent, "ids", ()))
    _unsent.ids = set()
    if not ids:
        return
    if not settings.REDIS_URL:
        for order_id in ids:  # embedded mode: every waiter is in this process
            _listener.wake(order_id)
        return
    global _publish_paused_until
    if time.monotonic() < _publish_paused_until:
        return  # Redis failed just now: no commit waits on its timeout again meanwhile
    try:
        with redis_client().pipeline(transaction=False) as pipe:
            for order_id in ids:
                pipe.publish(CHANNEL, order_id)
            pipe.execute()
    except Exception as error:  # best effort: the waiters' own re-check finds the outcome a little later
        _publish_paused_until = time.monotonic() + PUBLISH_PAUSE_SECONDS
        logger.warning(
            "waits: could not publish the change of %s (%s); not publishing for %g s",
            ", ".join(ids),
            error,
            PUBLISH_PAUSE_SECONDS,
        )


@receiver(step_settled, dispatch_uid="waits-step-settled")
@receiver(step_failed, dispatch_uid="waits-step-failed")
def _step_outcome(sender, step, escrow, **kwargs) -> None:
    """A provider step confirmed or refused: its order (the escrow's engagement) moved on, or not."""
    order_changed_notify(order_public_id=escrow.engagement_id)


@receiver(post_save, sender="marketplace.Order", dispatch_uid="waits-order-saved")
def _order_saved(sender, instance, created, **kwargs) -> None:
    if not created:
        order_changed_notify(order_public_id=instance.public_id)


# --- Waiters and the listener -------------------------------------------------------------


class _ThreadWaiter:
    def __init__(self, key: str):
        self.key = key
        self._event = threading.Event()

    def wake(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """Until woken or `timeout` passed; True if woken. Anything after this returns wakes it again."""
        woken = self._event.wait(max(timeout, 0))
        self._event.clear()
        return woken


class _LoopWaiter:
    def __init__(self, key: str, loop: asyncio.AbstractEventLoop):
        self.key = key
        self.loop = loop
        self._event = asyncio.Event()

    def wake(self) -> None:  # from the listener's thread
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self.loop.call_soon_threadsafe(self._event.set)

    async def wait(self, timeout: float) -> bool:
        woken = True
        try:
            async with asyncio.timeout(max(timeout, 0)):
                await self._event.wait()
        except TimeoutError:
            woken = False
        self._event.clear()
        return woken


class _Listener:
    """This process's waiters by order id, and the one thread that hears the channel for them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.waiters: dict[str, set] = {}
        self.thread: threading.Thread | None = None
        self.pid = 0
        self.subscribed = False  # the channel is heard now (False while Redis is out of reach)

    def add(self, waiter) -> None:
        with self.lock:
            self.waiters.setdefault(waiter.key, set()).add(waiter)
            dead = self.thread is None or not self.thread.is_alive() or self.pid != os.getpid()
            if settings.REDIS_URL and dead:
                self.pid = os.getpid()  # a forked worker starts its own
                self.thread = threading.Thread(target=self._run, name="waits-listener", daemon=True)
                self.thread.start()

    def remove(self, waiter) -> None:
        with self.lock:
            waiting = self.waiters.get(waiter.key)
            if waiting is not None:
                waiting.discard(waiter)
                if not waiting:
                    del self.waiters[waiter.key]

    def wake(self, key: str) -> None:
        with self.lock:
            waiting = list(self.waiters.get(key, ()))
        for waiter in waiting:
            waiter.wake()

    def wake_all(self) -> None:
        with self.lock:
            waiting = [waiter for group in self.waiters.values() for waiter in group]
        for waiter in waiting:
            waiter.wake()

    def _run(self) -> None:
        import redis

        while True:
            client = None
            try:
                client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, health_check_interval=30)
                with client.pubsub() as pubsub:
                    pubsub.subscribe(CHANNEL)
                    while True:
                        message = pubsub.get_message(timeout=30)
                        if message is None:
                            continue
                        if message["type"] == "subscribe":
                            # What committed before the subscription took effect was heard by no one.
                            self.wake_all()
                            self.subscribed = True  # after the wake-up: who sees it, saw that
                        elif message["type"] == "message":
                            self.wake(message["data"].decode())
            except Exception:
                if self.subscribed:
                    logger.warning("waits: Redis notifications lost; waiters re-check on their own", exc_info=True)
                self.subscribed = False
            finally:
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.close()
            threading.Event().wait(RECONNECT_SECONDS)


_listener = _Listener()


def recheck_seconds() -> float:
    """How long a waiter trusts the notifications before it looks anyway."""
    return max(0.2, settings.OFFERHUB_SYNC_WAIT_RECHECK_SECONDS)  # 0 would re-read without pause


@contextlib.contextmanager
def order_changes(order_public_id: str):
    """A waiter (in this thread) for the order's changes: register it before reading what it waits for."""
    waiter = _ThreadWaiter(order_public_id)
    _listener.add(waiter)
    try:
        yield waiter
    finally:
        _listener.remove(waiter)


@contextlib.asynccontextmanager
async def order_changes_async(order_public_id: str):
    """The same on the running event loop: its wait holds no thread."""
    waiter = _LoopWaiter(order_public_id, asyncio.get_running_loop())
    _listener.add(waiter)
    try:
        yield waiter
    finally:
        _listener.remove(waiter)


def waiters_count() -> int:
    """Waiters registered in this process now (the tests and the benchmark watch it)."""
    with _listener.lock:
        return sum(len(group) for group in _listener.waiters.values())


# --- Database calls from the loop ----------------------------------------------------------

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _database_executor() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=max(settings.OFFERHUB_SYNC_WAIT_DB_THREADS, 1), thread_name_prefix="wait-db"
            )
        return _executor


async def database(func: Callable, /, *args, **kwargs):
    """Run `func` (database work) on the waiters' few shared threads."""
    call = connections_released_after(func)
    return await sync_to_async(call, thread_sensitive=False, executor=_database_executor())(*args, **kwargs)


# --- Answers deferred past the request's thread (ASGI) -------------------------------------


@dataclass(eq=False)
class DeferredAnswer:
    """What a view hands the ASGI layer instead of waiting in its thread: `wait` runs on the loop
    (its result, or the exception it raised, is the outcome) and `finish(outcome)` makes the final
    response in a database thread (and stores it for the Idempotency-Key)."""

    wait: Callable[[], Awaitable[object]]
    finish: Callable[[object], HttpResponse]
    idempotency_record: object = None  # the request's claim on its key, handed over by ApiView.dispatch

    async def complete(self) -> HttpResponse:
        try:
            outcome = await self.wait()
        except Exception as error:  # a refusal, or the database out of reach: finish answers it
            outcome = error
        return await database(self.finish, outcome)


@dataclass(eq=False)
class AnswerSlot:
    answer: DeferredAnswer | None = None


class DeferredResponse(HttpResponse):
    """Stands in for the answer while it is deferred; never sent (`deferred_answers` replaces it)."""

    def __init__(self, answer: DeferredAnswer):
        super().__init__(b"", status=202, content_type="application/json")
        self.deferred = answer


def answer_slot(request) -> AnswerSlot | None:
    """Where this request may defer its answer: only under `deferred_answers` (ASGI), else None."""
    scope = getattr(request, "scope", None)
    return scope.get(SCOPE_KEY) if isinstance(scope, dict) else None


async def _claim_release(answer: DeferredAnswer) -> None:
    """Free the answer's Idempotency-Key as a 5xx would (a retry resumes the step), rather than
    leaving it claimed until its lock lapses."""
    if answer.idempotency_record is None:
        return
    from offerhub.models import IdempotencyRecord

    def release() -> None:
        try:
            IdempotencyRecord.objects.filter(
                pk=answer.idempotency_record.pk, status=IdempotencyRecord.Status.PROCESSING
            ).delete()
        finally:
            close_old_connections()

    try:
        await sync_to_async(release, thread_sensitive=False)()
    except Exception:
        logger.warning("idempotency record %s left to lapse", answer.idempotency_record.pk, exc_info=True)


def deferred_answers(app):
    """ASGI middleware around Django: a POST whose view deferred its answer gets it once the wait
    is over, the Django application (and its thread) long done. The headers are the stand-in's
    (what the middleware added) with the final response's own over them."""

    async def serve(scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await app(scope, receive, send)
        slot = AnswerSlot()
        held: list[dict] = []

        async def send_or_hold(message):
            if slot.answer is None:
                await send(message)
            else:
                held.append(message)

        await app({**scope, SCOPE_KEY: slot}, receive, send_or_hold)
        if slot.answer is None:
            return
        try:
            response = await slot.answer.complete()
        except BaseException:  # cancelled at shutdown, the database threads gone: no answer made
            await asyncio.shield(_claim_release(slot.answer))
            raise
        body = bytes(response.content)
        own = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in response.items()]
        replaced = {name for name, _ in own} | {b"content-length"}
        start = next((message for message in held if message["type"] == "http.response.start"), {"headers": []})
        headers = [(name, value) for name, value in start["headers"] if bytes(name).lower() not in replaced]
        headers += [*own, (b"content-length", str(len(body)).encode())]
        headers += [(b"set-cookie", cookie.output(header="").strip().encode()) for cookie in response.cookies.values()]
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return serve
