"""GET /api/v1/events (API.md §12) against a live ASGI server: replay and live in commit order
with no gap or duplicate (out-of-order commits, another server, timestamp cursors), filters,
tenancy, the checks before a stream starts, the per-key cap, pings, revoked keys and tokens."""

import asyncio
import json
import logging
import queue
import socket
import threading
import time
from datetime import timedelta

import pytest
import requests
from django.db import connection, transaction

from offerhub.api.authentication import api_token_mint
from offerhub.event_stream import STREAM_BUFFER_MAX, StreamFilter, Subscription, frame_from_event
from offerhub.models import AuditLog, Event
from offerhub.services import api_key_create, api_key_revoke, event_publish
from offerhub.sse import _Player
from tests.asgi_live import asgi_serving

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _quick_streams(settings):
    settings.OFFERHUB_SSE_HEARTBEAT_SECONDS = 1.0
    settings.OFFERHUB_SSE_POLL_SECONDS = 0.5


def make_key(scopes=("read", "write"), marketplace_id=""):
    return api_key_create(
        name="stream test", scopes=list(scopes), marketplace_id=marketplace_id, actor_type="SYSTEM", actor_id="tests"
    )


def publish(event_type, *, aggregate_type="Order", aggregate_id="ord_1", payload=None, user_id="", marketplace_id=""):
    """An event committed on its own (delivery, sequencing included, runs at commit: tasks are eager)."""
    with transaction.atomic():
        event = event_publish(
            type=event_type,
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            payload=payload or {},
            user_id=user_id,
            marketplace_id=marketplace_id,
        )
    return Event.objects.get(pk=event.pk)


class Stream:
    """An SSE client reading frames on a thread of its own."""

    def __init__(self, url, secret=None, *, params=None, headers=None):
        headers = dict(headers or {})
        if secret:
            headers["Authorization"] = f"Bearer {secret}"
        self.response = requests.get(f"{url}/api/v1/events", params=params, headers=headers, stream=True, timeout=10)
        self.status = self.response.status_code
        self.frames: queue.Queue = queue.Queue()
        if self.status == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        text = ""
        try:
            for chunk in self.response.iter_content(chunk_size=None):
                text += chunk.decode()
                while "\n\n" in text:
                    block, text = text.split("\n\n", 1)
                    frame = {}
                    for line in block.split("\n"):
                        name, _, value = line.partition(": ")
                        frame[name] = value
                    self.frames.put(frame)
        except Exception as error:  # closed by the test, or cut by the server
            self.error = error
        finally:
            self.frames.put(None)

    def events(self, count, timeout=15.0):
        """The next `count` event frames (pings and `retry:` skipped) as (id, type, data)."""
        found, deadline = [], time.monotonic() + timeout
        while len(found) < count:
            frame = self.frames.get(timeout=max(deadline - time.monotonic(), 0.01))
            assert frame is not None, f"the stream ended after {found}"
            if "id" in frame:
                found.append((frame["id"], frame["event"], json.loads(frame["data"])))
        return found

    def quiet(self, seconds=1.5):
        """No event frame within `seconds`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                frame = self.frames.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                return True
            if frame is None or "id" in frame:
                return False
        return True

    def ended(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.frames.get(timeout=max(deadline - time.monotonic(), 0.01)) is None:
                    return True
            except queue.Empty:
                return False
        return False

    def close(self):
        self.response.close()


def ids(events):
    return [event_id for event_id, _, _ in events]


def test_replay_then_live_in_commit_order_without_gap_or_duplicate(asgi_server):
    _, secret = make_key()
    marker = publish("test.marker")
    earlier = [publish("order.created", aggregate_id=f"ord_{n}") for n in range(3)]
    stream = Stream(asgi_server, secret, params={"since": marker.event_id})
    assert stream.status == 200
    assert stream.response.headers["Content-Type"].startswith("text/event-stream")
    assert stream.response.headers["Cache-Control"] == "no-cache"
    assert stream.response.headers["X-Accel-Buffering"] == "no"
    first = stream.frames.get(timeout=10)
    assert first == {"retry": "3000"}
    replayed = stream.events(3)
    assert ids(replayed) == [e.event_id for e in earlier]
    event_id, event_type, data = replayed[0]
    assert event_type == "order.created" and data["eventId"] == event_id and data["aggregateId"] == "ord_0"
    assert set(data) == {"eventId", "eventType", "occurredAt", "aggregateId", "aggregateType", "payload", "metadata"}
    later = [publish("order.released", aggregate_id=f"ord_{n}") for n in range(3)]
    assert ids(stream.events(3)) == [e.event_id for e in later]
    assert stream.quiet()
    stream.close()


def test_without_a_cursor_a_stream_starts_with_what_happens_next(asgi_server):
    _, secret = make_key()
    publish("order.created")
    stream = Stream(asgi_server, secret)
    assert stream.quiet(1.0)  # nothing of the past
    new = publish("order.funds_reserved")
    assert ids(stream.events(1)) == [new.event_id]
    stream.close()


def test_out_of_order_commits_arrive_in_commit_order(asgi_server):
    """Event X is inserted first (lower id) but commits after Y: the stream, a resume after Y and
    a resume from before both see Y then X, each once."""
    _, secret = make_key()
    marker = publish("test.marker")
    live = Stream(asgi_server, secret)
    live.quiet(0.5)
    inserted, release = threading.Event(), threading.Event()
    slow = {}

    def long_transaction():
        try:
            with transaction.atomic():
                slow["event"] = event_publish(
                    type="order.created", aggregate_type="Order", aggregate_id="ord_x", payload={}
                )
                inserted.set()
                release.wait(20)
        finally:
            connection.close()

    thread = threading.Thread(target=long_transaction)
    thread.start()
    assert inserted.wait(10)
    fast = publish("order.created", aggregate_id="ord_y")
    assert fast.pk > slow["event"].pk  # inserted later …
    assert ids(live.events(1)) == [fast.event_id]  # … committed first, streamed first
    release.set()
    thread.join(20)
    x = Event.objects.get(pk=slow["event"].pk)
    assert x.position > fast.position
    assert ids(live.events(1)) == [x.event_id]
    assert live.quiet(1.0)
    live.close()

    after_y = Stream(asgi_server, secret, headers={"Last-Event-ID": fast.event_id})
    assert ids(after_y.events(1)) == [x.event_id] and after_y.quiet(1.0)
    after_y.close()
    from_start = Stream(asgi_server, secret, params={"since": marker.event_id})
    assert ids(from_start.events(2)) == [fast.event_id, x.event_id] and from_start.quiet(1.0)
    from_start.close()


def test_resume_on_another_server_continues_without_gap_or_duplicate(asgi_server):
    """A client reads from one server, loses it (a restart, or another web node), and resumes
    with Last-Event-ID on a fresh server process: the events it missed, then live ones."""
    _, secret = make_key()
    marker = publish("test.marker")
    first_batch = [publish("balance.credited", aggregate_type="Balance", aggregate_id="usr_1") for _ in range(3)]
    with asgi_serving() as first_server:
        stream = Stream(first_server, secret, params={"cursor": marker.event_id})
        seen = stream.events(2)
        stream.close()
    assert ids(seen) == [e.event_id for e in first_batch[:2]]
    missed = [publish("balance.debited", aggregate_type="Balance", aggregate_id="usr_1") for _ in range(2)]
    with asgi_serving() as second_server:
        resumed = Stream(second_server, secret, headers={"Last-Event-ID": seen[-1][0]})
        assert ids(resumed.events(3)) == [first_batch[2].event_id] + [e.event_id for e in missed]
        after = publish("balance.credited", aggregate_type="Balance", aggregate_id="usr_1")
        assert ids(resumed.events(1)) == [after.event_id]
        assert resumed.quiet(1.0)
        resumed.close()


def test_timestamp_cursors_and_an_id_no_longer_retained(asgi_server):
    _, secret = make_key()
    oldest = publish("order.created", aggregate_id="ord_0")
    Event.objects.filter(pk=oldest.pk).update(occurred_at=oldest.occurred_at - timedelta(seconds=5))
    newer = [publish("order.created", aggregate_id=f"ord_{n}") for n in (1, 2)]
    moment = oldest.occurred_at - timedelta(seconds=2)
    iso = moment.isoformat().replace("+00:00", "Z")
    millis = str(int(moment.timestamp() * 1000))
    for cursor in (iso, millis):
        stream = Stream(asgi_server, secret, params={"since": cursor})
        assert ids(stream.events(2)) == [e.event_id for e in newer] and stream.quiet(0.8)
        stream.close()
    gone = Stream(asgi_server, secret, params={"since": "evt_" + "x" * 32})  # reaped (or never ours)
    assert ids(gone.events(3)) == [oldest.event_id] + [e.event_id for e in newer]
    gone.close()


def test_filters_and_tenancy_apply_to_replay_and_live(asgi_server):
    _, platform = make_key()
    _, tenant_a = make_key(marketplace_id="mkt_a")

    def story():
        return [
            publish(
                "order.created", payload={"orderId": "ord_1", "buyerId": "usr_a", "sellerId": "usr_s"}, user_id="usr_a"
            ),
            publish("order.released", payload={"orderId": "ord_1", "sellerId": "usr_s"}, user_id="usr_s"),
            publish(
                "balance.credited",
                aggregate_type="Balance",
                aggregate_id="usr_b",
                payload={"userId": "usr_b"},
                user_id="usr_b",
            ),
            publish(
                "dispute.opened",
                aggregate_type="Dispute",
                aggregate_id="dsp_1",
                payload={"orderId": "ord_1", "buyerId": "usr_a"},
            ),
            publish("order.created", payload={"buyerId": "usr_c"}, user_id="usr_c", marketplace_id="mkt_a"),
            publish(
                "withdrawal.created",
                aggregate_type="Withdrawal",
                aggregate_id="wd_1",
                payload={"userId": "usr_d"},
                marketplace_id="mkt_b",
            ),
        ]

    cases = [
        (platform, {"types": "order.*"}, lambda e: e.type.startswith("order.")),
        (
            platform,
            {"types": ["balance.credited", "dispute.opened"]},
            lambda e: e.type in ("balance.credited", "dispute.opened"),
        ),
        (
            platform,
            {"types": "*", "resources": "Balance,withdrawal"},
            lambda e: e.aggregate_type in ("Balance", "Withdrawal"),
        ),
        (platform, {"resourceTypes": "Dispute"}, lambda e: e.aggregate_type == "Dispute"),
        (platform, {"user_id": "usr_a"}, lambda e: e.event_id in {story_ids[0], story_ids[3]}),
        (platform, {"user_id": "usr_s", "types": "order.released"}, lambda e: e.type == "order.released"),
        (tenant_a, {}, lambda e: e.marketplace_id == "mkt_a"),
        (tenant_a, {"types": "withdrawal.*"}, lambda e: False),
    ]
    marker = publish("test.marker")
    past = story()
    story_ids = [e.event_id for e in past]
    streams = [Stream(asgi_server, secret, params={**params, "since": marker.event_id}) for secret, params, _ in cases]
    for stream, (_, params, wanted) in zip(streams, cases, strict=True):
        expected = [e.event_id for e in past if wanted(e)]
        assert ids(stream.events(len(expected))) == expected, params
    present = story()
    story_ids = [e.event_id for e in present]
    for stream, (_, params, wanted) in zip(streams, cases, strict=True):
        expected = [e.event_id for e in present if wanted(e)]
        assert ids(stream.events(len(expected))) == expected, params
        assert stream.quiet(0.3), params
        stream.close()


def test_the_checks_before_a_stream_starts(asgi_server):
    key, secret = make_key()
    _, write_only = make_key(scopes=("write",))
    url = f"{asgi_server}/api/v1/events"

    def refused(status, code, **kwargs):
        answer = requests.get(url, timeout=10, **kwargs)
        assert answer.status_code == status, answer.text
        assert answer.headers["Content-Type"] == "application/json"
        error = answer.json()["error"]
        assert error["code"] == code and error["details"]["requestId"]
        return error

    refused(401, "UNAUTHORIZED")
    refused(401, "UNAUTHORIZED", headers={"Authorization": "Basic abc"})
    refused(401, "INVALID_API_KEY", headers={"Authorization": "Bearer ohk_test_nope"})
    refused(401, "UNAUTHORIZED", params={"token": secret})  # an API key never goes in a URL
    refused(401, "INVALID_API_KEY", params={"token": "ohk_tok_forged"})
    refused(403, "INSUFFICIENT_SCOPE", headers={"Authorization": f"Bearer {write_only}"})
    auth = {"Authorization": f"Bearer {secret}"}
    assert (
        refused(400, "VALIDATION_ERROR", headers=auth, params={"since": "yesterday"})["details"]["fields"][0]["field"]
        == "since"
    )
    assert (
        refused(400, "VALIDATION_ERROR", headers={**auth, "Last-Event-ID": "evt_!!"})["details"]["fields"][0]["field"]
        == "Last-Event-ID"
    )
    assert (
        refused(400, "VALIDATION_ERROR", headers=auth, params={"types": "order.*,DROP TABLE"})["details"]["fields"][0][
            "field"
        ]
        == "types"
    )
    assert (
        refused(400, "VALIDATION_ERROR", headers=auth, params={"resources": "Invoice"})["details"]["fields"][0]["field"]
        == "resources"
    )
    assert (
        refused(400, "VALIDATION_ERROR", headers=auth, params={"user_id": "usr_1'--"})["details"]["fields"][0]["field"]
        == "user_id"
    )
    assert (
        refused(400, "VALIDATION_ERROR", headers=auth, params={"types": "order.created\x00"})["code"]
        == "VALIDATION_ERROR"
    )
    for odd in ("999999999999999999", "²", "2026-13-45T00:00:00Z", "evt_" + "x" * 90):  # never a 500
        field = refused(400, "VALIDATION_ERROR", headers=auth, params={"since": odd})["details"]["fields"][0]["field"]
        assert field == "since", odd
    many = "&".join(f"types=t{n}" for n in range(101))
    refused(401, "UNAUTHORIZED", params=many)  # authentication comes first (§1.2)
    assert "At most 100" in refused(400, "VALIDATION_ERROR", headers=auth, params=many)["message"]
    answer = requests.post(url, headers=auth, timeout=10)
    assert answer.status_code == 405 and answer.json()["error"]["code"] == "METHOD_NOT_ALLOWED"

    minted = requests.post(
        f"{asgi_server}/api/v1/auth/api-keys/{key.id}/token",
        json={"ttl_seconds": 120},
        headers={**auth, "Idempotency-Key": "mint-1"},
        timeout=10,
    )
    assert minted.status_code == 201, minted.text
    by_token = Stream(asgi_server, params={"token": minted.json()["data"]["token"]})  # as a browser's EventSource
    assert by_token.status == 200
    event = publish("order.created")
    assert ids(by_token.events(1)) == [event.event_id]
    by_token.close()


def test_streams_per_key_are_capped(asgi_server, settings):
    settings.OFFERHUB_SSE_MAX_STREAMS_PER_KEY = 2
    _, secret = make_key()
    _, other = make_key()
    open_streams = [Stream(asgi_server, secret), Stream(asgi_server, secret)]
    assert [s.status for s in open_streams] == [200, 200]
    third = requests.get(f"{asgi_server}/api/v1/events", headers={"Authorization": f"Bearer {secret}"}, timeout=10)
    assert third.status_code == 429 and third.json()["error"]["code"] == "RATE_LIMITED"
    assert int(third.headers["Retry-After"]) > 0 and third.json()["error"]["details"]["limit"] == 2
    another_key = Stream(asgi_server, other)
    assert another_key.status == 200
    open_streams[0].close()
    deadline = time.monotonic() + 10
    while True:  # the server frees the place once it sees the disconnect
        again = Stream(asgi_server, secret)
        if again.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert again.status == 200
    for stream in (open_streams[1], another_key, again):
        stream.close()


def test_pings_and_the_end_of_a_revoked_key_or_an_expired_token(asgi_server, settings):
    settings.OFFERHUB_SSE_HEARTBEAT_SECONDS = 0.4
    settings.OFFERHUB_SSE_REAUTH_SECONDS = 300.0  # revocation ends the stream by itself, at once
    key, secret = make_key()
    stream = Stream(asgi_server, secret)
    frames = [stream.frames.get(timeout=5) for _ in range(3)]
    assert frames[0] == {"retry": "3000"}
    ping = frames[1]
    assert ping["event"] == "ping" and "id" not in ping
    assert json.loads(ping["data"])["ping"] is True and json.loads(ping["data"])["timestamp"].endswith("Z")
    api_key_revoke(api_key=key, actor_type=AuditLog.ActorType.SYSTEM, actor_id="tests")
    assert stream.ended(5)

    key, _ = make_key()
    token, _ = api_token_mint(api_key=key, scopes=frozenset({"read"}), ttl_seconds=2)
    short = Stream(asgi_server, params={"token": token})
    assert short.status == 200
    started = time.monotonic()
    assert short.ended(8)
    assert time.monotonic() - started < 6


def test_a_hole_in_the_buffer_or_an_overflow_is_filled_from_the_database(transactional_db):
    """The player's own guard (no server needed): buffered frames that do not follow what was
    examined, or a buffer dropped by a slow stream, send it back to the database."""
    events = [publish("order.created", aggregate_id=f"ord_{n}") for n in range(5)]
    frames = [frame_from_event(e) for e in events]
    sent: list[bytes] = []

    async def send(message):
        sent.append(message["body"])

    async def scenario():
        subscription = Subscription()
        player = _Player(send, subscription, StreamFilter(), examined=events[0].position)
        player.needs_replay = False
        subscription.offer(frames[2:])  # the hub read from event 3 on: event 2 is missing
        await player.play_buffer()
        assert player.needs_replay and not sent
        await player.replay()
        await player.play_buffer()  # what the replay covered is skipped
        assert b"".join(sent) == b"".join(frame.data for frame in frames[1:])
        assert player.examined == events[-1].position and not subscription.buffer

        sent.clear()
        player.examined = events[1].position
        subscription.offer(frames * (STREAM_BUFFER_MAX // len(frames) + 1))  # more than a stream may hold
        assert subscription.overflowed and not subscription.buffer
        await player.play_buffer()
        assert player.needs_replay
        await player.replay()
        assert b"".join(sent) == b"".join(frame.data for frame in frames[2:])

    try:
        asyncio.run(scenario())
    finally:
        connection.close()


def test_the_access_log_never_shows_a_stream_token():
    import offerhub.asgi  # noqa: F401  (installs the filter on uvicorn's access logger)
    from offerhub.correlation import AccessLogTokenFilter

    access = logging.getLogger("uvicorn.access")
    assert any(isinstance(f, AccessLogTokenFilter) for f in access.filters)
    path = "/api/v1/events?types=order.*&token=ohk_tok_secret.part&since=evt_1"
    record = access.makeRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s"', ("1.2.3.4:5", "GET", path), None)
    for log_filter in access.filters:
        log_filter.filter(record)
    assert record.getMessage() == '1.2.3.4:5 - "GET /api/v1/events?types=order.*&token=[redacted]&since=evt_1"'


def test_pages_of_allowed_origins_may_read_the_stream(asgi_server, settings):
    settings.OFFERHUB_SSE_ALLOWED_ORIGINS = ["https://shop.example.com"]
    key, _ = make_key()
    token, _ = api_token_mint(api_key=key, scopes=frozenset({"read"}), ttl_seconds=60)
    url = f"{asgi_server}/api/v1/events"
    preflight = requests.options(
        url,
        headers={"Origin": "https://shop.example.com", "Access-Control-Request-Headers": "last-event-id"},
        timeout=10,
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert "Last-Event-ID" in preflight.headers["Access-Control-Allow-Headers"]
    allowed = Stream(asgi_server, params={"token": token}, headers={"Origin": "https://shop.example.com"})
    assert allowed.status == 200
    assert allowed.response.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    allowed.close()
    other = Stream(asgi_server, params={"token": token}, headers={"Origin": "https://evil.example.net"})
    assert other.status == 200 and "Access-Control-Allow-Origin" not in other.response.headers  # the browser hides it
    other.close()
    refused = requests.get(
        url, params={"token": "ohk_tok_bad"}, headers={"Origin": "https://shop.example.com"}, timeout=10
    )
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"


def test_a_held_stream_keeps_its_place_past_the_lease_time(asgi_server, settings):
    """Places lapse after three heartbeats unless renewed: a stream held for longer still counts."""
    settings.OFFERHUB_SSE_HEARTBEAT_SECONDS = 0.3  # places lapse after 1 s without a renewal
    settings.OFFERHUB_SSE_MAX_STREAMS_PER_KEY = 1
    _, secret = make_key()
    held = Stream(asgi_server, secret)
    assert held.status == 200
    pings = 0
    while pings < 10:  # three seconds and more: three lease lifetimes
        frame = held.frames.get(timeout=5)
        pings += frame.get("event") == "ping"
    second = requests.get(f"{asgi_server}/api/v1/events", headers={"Authorization": f"Bearer {secret}"}, timeout=10)
    assert second.status_code == 429
    held.close()


def test_a_client_that_stops_reading_is_ended_and_frees_its_place(asgi_server, settings, caplog):
    settings.OFFERHUB_SSE_HEARTBEAT_SECONDS = 30.0  # a place would lapse only after 90 s: freed here by the end
    settings.OFFERHUB_SSE_WRITE_TIMEOUT_SECONDS = 1.0
    settings.OFFERHUB_SSE_MAX_STREAMS_PER_KEY = 1
    caplog.set_level(logging.INFO, logger="offerhub.sse")
    _, secret = make_key()
    host, port = asgi_server.removeprefix("http://").split(":")
    stalled = socket.create_connection((host, int(port)))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(f"GET /api/v1/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {secret}\r\n\r\n".encode())
    assert b" 200 " in stalled.recv(200)  # then it reads nothing more
    big = {"text": "x" * 200_000}
    for _ in range(30):  # about 6 MB: more than the sockets' buffers hold
        publish("order.created", payload=big)
    deadline = time.monotonic() + 20
    while True:  # the server gives up on it and frees the key's one place
        again = requests.get(
            f"{asgi_server}/api/v1/events", headers={"Authorization": f"Bearer {secret}"}, stream=True, timeout=10
        )
        if again.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert again.status_code == 200
    again.close()
    assert any("the client stopped reading" in record.getMessage() for record in caplog.records)
    stalled.close()


def test_the_hub_is_woken_by_the_sequencers_redis_message(transactional_db, settings):
    """Another node's sequencer (here: a plain Redis publish) wakes this process's hub at once."""
    import redis

    from offerhub.event_stream import NOTIFY_CHANNEL, EventHub

    async def scenario():
        hub = EventHub(asyncio.get_running_loop())
        listener = asyncio.get_running_loop().create_task(hub._listen())
        try:
            publisher = redis.Redis.from_url(settings.REDIS_URL)
            deadline = time.monotonic() + 10
            while not hub.wake.is_set():  # publish until the subscription is in place
                assert time.monotonic() < deadline, "the hub never heard the notification"
                publisher.publish(NOTIFY_CHANNEL, b"1")
                await asyncio.sleep(0.05)
        finally:
            listener.cancel()

    asyncio.run(scenario())


def test_type_prefixes_match_whole_segments(asgi_server):
    _, secret = make_key()
    marker = publish("test.marker")
    events = [publish(t) for t in ("order", "orderx.created", "order.created", "order.escrow.funded")]
    stream = Stream(asgi_server, secret, params={"types": "order.*", "since": marker.event_id})
    assert ids(stream.events(2)) == [events[2].event_id, events[3].event_id]
    assert stream.quiet(0.8)
    stream.close()
