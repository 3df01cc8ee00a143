"""GET /api/v1/events: the server-sent event stream (API.md §12), as an ASGI application.

It is served beside Django rather than through it (offerhub.asgi routes the path here):
Django's ASGI handler keeps a thread per request until the response ends, so a stream served
through it would hold a thread for as long as the client listens. Here a stream is a
coroutine; its few database reads go through offerhub.event_stream's shared threads.

The checks run in the API's order (§1.2): authentication (401), scope (403), rate limit (429),
input (400), then the per-key stream cap (429). Refusals are the API's JSON error envelope;
a stream that starts is `text/event-stream` with no envelope.
"""

import asyncio
import contextlib
import json
import logging
import time
import uuid
from types import SimpleNamespace
from urllib.parse import parse_qs

from django.conf import settings

from offerhub.api.authentication import TOKEN_PREFIX, Principal, bearer_credential, principal_from_bearer
from offerhub.api.errors import as_api_error, error_body
from offerhub.api.permissions import scope_refusal
from offerhub.api.ratelimit import RateLimitState, client_ip, rate_limit_hit
from offerhub.correlation import correlation_id_from_header, correlation_id_var
from offerhub.errors import ServiceError
from offerhub.event_stream import (
    EventHub,
    StreamFilter,
    Subscription,
    database,
    event_hub,
    stream_filter_parse,
    stream_replay_page,
    stream_start_position,
)
from offerhub.redis_clients import redis_client
from offerhub.timefmt import iso_now

logger = logging.getLogger(__name__)

# KEYS[1] the key's open streams (a sorted set scored by lease expiry); ARGV: now, cap, expiry,
# stream id, the set's TTL in ms. Atomic, so that concurrent openings across nodes never pass the cap.
LEASE_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""


class StreamEnded(Exception):
    """The stream stops: the client left or stopped reading (`reachable` False: nothing more can
    be written), or its key was revoked (the answer is ended properly)."""

    def __init__(self, reason: str, *, reachable: bool = True):
        super().__init__(reason)
        self.reachable = reachable


def _rate_limited(state: RateLimitState) -> ServiceError:
    from offerhub.api.base import ApiView  # the one shape of a 429

    return ApiView._rate_limited(state)


class StreamLease:
    """One of a key's OFFERHUB_SSE_MAX_STREAMS_PER_KEY places: in Redis (shared by the web
    nodes, each place expiring unless renewed at every ping) or, in embedded mode, in memory."""

    def __init__(self, hub: EventHub, key_id: str):
        self.hub, self.key_id, self.member = hub, key_id, uuid.uuid4().hex
        self.redis_key = f"offerhub:sse:streams:{key_id}"

    @staticmethod
    def ttl_seconds() -> float:
        """A place lapses unless renewed: three heartbeats (renewed at each ping)."""
        return max(settings.OFFERHUB_SSE_HEARTBEAT_SECONDS * 3, 1.0)

    async def acquire(self) -> bool:
        cap = settings.OFFERHUB_SSE_MAX_STREAMS_PER_KEY
        client = self.hub.redis_client()
        if client is None:
            held = self.hub.local_leases.setdefault(self.key_id, set())
            if len(held) >= cap:
                return False
            held.add(self.member)
            return True
        now, ttl = time.time(), self.ttl_seconds()
        try:
            script = client.register_script(LEASE_SCRIPT)
            args = [now, cap, now + ttl, self.member, int(ttl * 1000)]
            return bool(await script(keys=[self.redis_key], args=args))
        except Exception:  # as the rate limiter: a Redis outage does not stop the API
            logger.warning("event stream: the stream cap is unavailable; allowing the stream", exc_info=True)
            return True

    async def renew(self) -> None:
        """At each ping: this place and the set holding it live another TTL."""
        client = self.hub.redis_client()
        if client is None:
            return
        ttl = self.ttl_seconds()
        try:
            async with client.pipeline(transaction=False) as pipe:
                pipe.zadd(self.redis_key, {self.member: time.time() + ttl})
                pipe.pexpire(self.redis_key, int(ttl * 1000))
                await pipe.execute()
        except Exception:
            logger.warning("event stream: could not renew a stream's place", exc_info=True)

    async def release(self) -> None:
        client = self.hub.redis_client()
        if client is None:
            self.hub.local_leases.get(self.key_id, set()).discard(self.member)
            return
        try:
            await client.zrem(self.redis_key, self.member)
        except asyncio.CancelledError:
            # The server is stopping and cancels what is left: no await may finish now, so the
            # place is given back with one blocking call (about a millisecond) instead of lapsing.
            with contextlib.suppress(Exception):
                redis_client().zrem(self.redis_key, self.member)
            raise
        except Exception:
            logger.warning("event stream: could not release a stream's place (it lapses)", exc_info=True)


class Refused(Exception):
    """The request is answered with an error envelope instead of a stream."""

    def __init__(self, error: ServiceError, extra_headers: dict | None = None):
        self.error, self.extra_headers = error, extra_headers or {}


async def event_stream_app(scope, receive, send) -> None:
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    request_id = correlation_id_from_header(headers.get("x-request-id"))
    correlation_id_var.set(request_id)
    cors = _cors_headers(headers.get("origin", ""))
    if scope["method"] == "OPTIONS":  # a browser's preflight (EventSource resending Last-Event-ID)
        await _preflight(send, cors, request_id)
        return
    try:
        opened = await _open(scope, headers)
    except Refused as refusal:
        await _refuse(send, refusal.error, request_id, {**cors, **refusal.extra_headers})
        return
    except Exception as exc:  # e.g. the database out of reach: 503 with Retry-After
        await _refuse(send, as_api_error(exc), request_id, cors)
        return
    await _stream(scope, receive, send, request_id=request_id, cors=cors, **opened)


def _cors_headers(origin: str) -> dict:
    """Pages of the configured origins may read the stream (EventSource with ?token=)."""
    allowed = settings.OFFERHUB_SSE_ALLOWED_ORIGINS
    if origin and (origin in allowed or "*" in allowed):
        return {"access-control-allow-origin": origin, "vary": "Origin"}
    return {}


async def _preflight(send, cors: dict, request_id: str) -> None:
    headers = {"allow": "GET, OPTIONS", "x-request-id": request_id, **cors}
    if cors:
        headers.update(
            {
                "access-control-allow-methods": "GET",
                "access-control-allow-headers": "Authorization, Last-Event-ID, Cache-Control",
                "access-control-max-age": "600",
            }
        )
    await send(
        {
            "type": "http.response.start",
            "status": 204,
            "headers": [(name.encode(), value.encode()) for name, value in headers.items()],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def _refuse(send, error: ServiceError, request_id: str, extra_headers: dict) -> None:
    body = json.dumps(error_body(error)).encode()
    headers = {
        "content-type": "application/json",
        "content-length": str(len(body)),
        "x-request-id": request_id,
        "x-content-type-options": "nosniff",
        **{name.lower(): value for name, value in {**error.headers, **extra_headers}.items()},
    }
    if error.status == 401:
        headers["www-authenticate"] = 'Bearer realm="api"'
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [(name.encode(), str(value).encode()) for name, value in headers.items()],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _credential(headers: dict, query: dict) -> str:
    if headers.get("authorization"):
        return bearer_credential(headers["authorization"])
    tokens = query.get("token", [])
    if tokens:
        if len(tokens) != 1 or not tokens[0].startswith(TOKEN_PREFIX):
            # An API key in a URL ends up in logs and browser history: only short-lived tokens go there.
            raise ServiceError(
                "UNAUTHORIZED", "?token= takes a short-lived ohk_tok_ token (POST /auth/api-keys/{id}/token)"
            )
        return tokens[0]
    raise ServiceError("UNAUTHORIZED", "Authorization header with a Bearer API key (or ?token=ohk_tok_…) is required")


async def _open(scope, headers: dict) -> dict:
    """The checks before a stream starts; what the stream needs, or Refused."""
    if scope["method"] != "GET":
        raise Refused(
            ServiceError("METHOD_NOT_ALLOWED", f"Method {scope['method']} is not allowed"), {"Allow": "GET, OPTIONS"}
        )
    query, query_problem = _query_parse(scope.get("query_string", b""))
    try:
        raw = _credential(headers, query)
        principal = await database(principal_from_bearer, raw)
    except ServiceError as error:  # failed authentication counts against the client's address
        await _rate_limit_check(f"ip:{_client_ip(scope, headers)}")
        raise Refused(as_api_error(error)) from None
    if not principal.has_scope("read"):
        await _rate_limit_check(f"key:{principal.key_id}")
        raise Refused(scope_refusal(principal, "read"))
    state = await _rate_limit_check(f"key:{principal.key_id}")
    try:
        if query_problem:  # reported once the caller is known (§1.2: authentication first)
            raise ServiceError("VALIDATION_ERROR", query_problem, field="query")
        if any("\x00" in value for values in query.values() for value in values):
            raise ServiceError("VALIDATION_ERROR", "The query string contains a NUL character", field="query")
        stream_filter = stream_filter_parse(query=query, marketplace_id=principal.marketplace_id)
        cursor, field_name = _cursor(headers, query)
        start = await database(stream_start_position, cursor=cursor, field_name=field_name)
    except ServiceError as error:
        raise Refused(as_api_error(error), state.headers()) from None
    hub = event_hub()
    lease = StreamLease(hub, principal.key_id)
    if not await lease.acquire():
        cap = settings.OFFERHUB_SSE_MAX_STREAMS_PER_KEY
        retry_after = int(settings.OFFERHUB_SSE_HEARTBEAT_SECONDS)
        raise Refused(
            ServiceError(
                "RATE_LIMITED",
                f"At most {cap} event streams may be open at once per API key; close one first",
                details={"limit": cap, "retryAfter": retry_after},
                headers={"Retry-After": str(retry_after)},
            ),
            state.headers(),
        )
    return {
        "principal": principal,
        "credential": raw,
        "stream_filter": stream_filter,
        "start": start,
        "hub": hub,
        "lease": lease,
        "rate_headers": state.headers(),
    }


QUERY_FIELDS_MAX = 100


def _query_parse(raw: bytes) -> tuple[dict[str, list[str]], str]:
    """The query's parameters, and what is wrong with it ("" if nothing)."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return {}, "The query string is not UTF-8 text"
    try:
        return parse_qs(text, keep_blank_values=True, max_num_fields=QUERY_FIELDS_MAX, errors="strict"), ""
    except UnicodeDecodeError:
        return {}, "The query string is not UTF-8 text"
    except ValueError:
        return {}, f"At most {QUERY_FIELDS_MAX} query parameters"


def _client_ip(scope, headers: dict) -> str:
    meta = {"REMOTE_ADDR": (scope.get("client") or ("unknown", 0))[0]}
    if "x-forwarded-for" in headers:
        meta["HTTP_X_FORWARDED_FOR"] = headers["x-forwarded-for"]
    return client_ip(SimpleNamespace(META=meta))


async def _rate_limit_check(bucket: str) -> RateLimitState:
    state = await database(rate_limit_hit, bucket=bucket)
    if state.exceeded:
        raise Refused(_rate_limited(state))
    return state


def _cursor(headers: dict, query: dict) -> tuple[str, str]:
    """Last-Event-ID, else `since`, else `cursor` (the original's alias); the field it came from."""
    if headers.get("last-event-id", "").strip():
        return headers["last-event-id"].strip(), "Last-Event-ID"
    for name in ("since", "cursor"):
        values = [value.strip() for value in query.get(name, []) if value.strip()]
        if len(values) > 1:
            raise ServiceError("VALIDATION_ERROR", "give one cursor", field=name)
        if values:
            return values[0], name
    return "", ""


def _ping() -> bytes:
    return b'event: ping\ndata: {"ping":true,"timestamp":"' + iso_now().encode() + b'"}\n\n'


async def _stream(
    scope,
    receive,
    send,
    *,
    request_id: str,
    cors: dict,
    principal: Principal,
    credential: str,
    stream_filter: StreamFilter,
    start: int,
    hub: EventHub,
    lease: StreamLease,
    rate_headers: dict,
) -> None:
    subscription = hub.join(key_id=principal.key_id)  # before the replay: every new event is buffered
    player = _Player(send, subscription, stream_filter, examined=start)
    stream_task = asyncio.current_task()

    async def watch_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        # Both: the cancel interrupts what the stream awaits, and the flag holds should the
        # cancel be swallowed by an await finishing at that very moment.
        player.gone = True
        stream_task.cancel()

    watcher = asyncio.create_task(watch_disconnect())
    try:
        headers = {
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            "x-accel-buffering": "no",
            "x-content-type-options": "nosniff",
            "x-request-id": request_id,
            **{name.lower(): value for name, value in rate_headers.items()},
            **cors,
        }
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(name.encode(), value.encode()) for name, value in headers.items()],
            }
        )
        await player.write(f"retry: {settings.OFFERHUB_SSE_RETRY_MILLISECONDS}\n\n".encode())
        await player.play(principal=principal, credential=credential, lease=lease)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except StreamEnded as ended:
        logger.info("event stream of %s ended: %s", principal.key_id, ended)
        if ended.reachable:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
    except asyncio.CancelledError:
        if not player.gone:
            raise
    except OSError:  # the client went away while we wrote
        pass
    finally:
        watcher.cancel()
        hub.leave(subscription)
        await lease.release()


class _Player:
    """Sends a stream's events in commit order: replay from the database, then the hub's
    buffer, back to the database whenever the buffer cannot prove it has no hole."""

    def __init__(self, send, subscription: Subscription, stream_filter: StreamFilter, *, examined: int):
        self.send, self.subscription, self.filter = send, subscription, stream_filter
        self.examined = examined  # every event up to this position was sent or did not match
        self.needs_replay = True
        self.gone = False  # the client disconnected

    async def write(self, body: bytes) -> None:
        """One chunk to the client, who must take it within OFFERHUB_SSE_WRITE_TIMEOUT_SECONDS:
        a client that stops reading would otherwise hold its place (and its memory) for ever."""
        if self.gone:
            raise StreamEnded("the client disconnected", reachable=False)
        try:
            async with asyncio.timeout(settings.OFFERHUB_SSE_WRITE_TIMEOUT_SECONDS):
                await self.send({"type": "http.response.body", "body": body, "more_body": True})
        except TimeoutError:
            raise StreamEnded("the client stopped reading", reachable=False) from None
        if self.gone:  # the server drops writes to a closed connection without a word
            raise StreamEnded("the client disconnected", reachable=False)

    async def replay(self) -> None:
        self.subscription.overflowed = False  # buffer again from here; the replay covers what was dropped
        frames, self.examined, more = await database(
            stream_replay_page, after=self.examined, stream_filter=self.filter, replay=True
        )
        self.needs_replay = more
        if frames:
            await self.write(b"".join(frame.data for frame in frames))

    async def play_buffer(self) -> None:
        chunks, buffer = [], self.subscription.buffer
        while buffer:
            frame = buffer[0]
            if frame.position > self.examined + 1:
                self.needs_replay = True  # a hole (e.g. the hub read before this stream's replay did)
                break
            buffer.popleft()
            if frame.position <= self.examined:
                continue  # the replay sent it (or skipped it) already
            self.examined = frame.position
            if self.filter.matches(frame):
                chunks.append(frame.data)
        if self.subscription.overflowed:
            self.needs_replay = True
        if chunks:
            await self.write(b"".join(chunks))

    async def play(self, *, principal: Principal, credential: str, lease: StreamLease) -> None:
        loop = asyncio.get_running_loop()
        heartbeat, reauth = settings.OFFERHUB_SSE_HEARTBEAT_SECONDS, settings.OFFERHUB_SSE_REAUTH_SECONDS
        next_ping, next_auth = loop.time() + heartbeat, loop.time() + reauth
        ends_at = loop.time() + (principal.expires_at - time.time()) if principal.expires_at else None
        while True:
            if self.subscription.revoked:
                raise StreamEnded("its API key was revoked")
            if self.needs_replay:
                await self.replay()
            else:
                await self.play_buffer()
            if not self.needs_replay and not self.subscription.buffer and not self.subscription.revoked:
                self.subscription.ready.clear()  # no await since the buffer was found empty: no lost wake-up
                deadline = min(next_ping, next_auth, ends_at or next_ping)
                # asyncio.timeout, not wait_for: no task per stream per wake-up (3.11)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(deadline - loop.time(), 0)):
                        await self.subscription.ready.wait()
            now = loop.time()
            if ends_at is not None and now >= ends_at:
                return  # the token expired: the client mints a new one and resumes from its last id
            if now >= next_ping:
                await self.write(_ping())
                await lease.renew()
                next_ping = now + heartbeat
            if now >= next_auth:  # revocations end streams at once (the hub hears them); this is the backstop
                try:
                    await database(principal_from_bearer, credential)
                except ServiceError:
                    raise StreamEnded("its API key is no longer valid") from None
                next_auth = now + reauth
