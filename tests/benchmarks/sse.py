"""`make bench`, event stream phase: 1,000 GET /api/v1/events subscribers on one uvicorn worker.

The server is a subprocess in full mode as production runs it (DEBUG off, PostgreSQL, Redis:
the per-key stream cap and the sequencer's pub/sub wake-up). The subscribers are one asyncio
loop on a thread of this process (raw HTTP/1.1 with chunked decoding, no thread per stream);
events are published from the main thread, each in a committed transaction whose delivery
(sequencing, then the Redis notification) runs in this process as the bench's tasks do.
"""

import asyncio
import contextlib
import gc
import os
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
PG_PORT, REDIS_PORT = 5432, 6379


# --- The server process, seen from /proc -----------------------------------------------------


def proc_status(pid: int) -> dict:
    """VmRSS (KiB) and Threads of a process."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "Threads"):
            found[name] = int(value.split()[0])
    return found


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def proc_tcp(pid: int) -> list[tuple[int, int, str]]:
    """The process's TCP sockets as (local port, remote port, state hex)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    sockets = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[9] in inodes:
                local, remote = fields[1].rsplit(":", 1)[1], fields[2].rsplit(":", 1)[1]
                sockets.append((int(local, 16), int(remote, 16), fields[3]))
    return sockets


def server_figures(pid: int, database_url: str) -> dict:
    """RSS, threads, and the server's own PostgreSQL connections (pg_stat_activity rows whose
    client port is one of its sockets) and Redis connections."""
    import psycopg

    database_name = database_url.rsplit("/", 1)[1].split("?")[0]
    status = proc_status(pid)
    sockets = proc_tcp(pid)
    established = [s for s in sockets if s[2] == "01"]
    pg_ports = [local for local, remote, _ in established if remote == PG_PORT]
    with psycopg.connect(database_url, autocommit=True) as conn:
        server_pg = conn.execute(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = %s AND client_port = ANY(%s)",
            [database_name, pg_ports],
        ).fetchone()[0]
        all_pg = conn.execute("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = %s", [database_name]).fetchone()[0]
    return {
        "rss_kib": status["VmRSS"],
        "threads": status["Threads"],
        "pg": server_pg,
        "pg_all": all_pg,
        "redis": sum(1 for _, remote, _ in established if remote == REDIS_PORT),
        "fds": len(list(Path(f"/proc/{pid}/fd").iterdir())),
    }


def redis_last_commands(redis_url: str) -> dict:
    """How many of the Redis db's clients last ran each command (what the connections are for)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    database = client.connection_pool.connection_kwargs.get("db", 0)
    counts: dict[str, int] = {}
    for entry in client.client_list():
        if int(entry.get("db", -1)) == database:
            counts[entry["cmd"]] = counts.get(entry["cmd"], 0) + 1
    client.close()
    return counts


def full_mode_env(*, database_url: str, redis_url: str) -> dict[str, str]:
    """The environment of a server process in full mode, as docs/deployment.md runs it."""
    from cryptography.fernet import Fernet

    env = {
        **os.environ,
        "ENV_FILE": "",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        # Production settings (docs/deployment.md): DEBUG off refuses the sandbox and weak secrets.
        "DEBUG": "false",
        "OFFERHUB_SANDBOX": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "OFFERHUB_WALLET_KEYS": Fernet.generate_key().decode(),
        "TRUSTLESS_WORK_API_URL": "https://trustless-work.invalid",
        "OFFERHUB_AIRTM_BASE_URL": "https://airtm.invalid",
        "STELLAR_HORIZON_URL": "https://horizon.invalid",
        "ALLOWED_HOSTS": f"{HOST},localhost",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    return env


def server_wait(process: subprocess.Popen, *, port: int, log: Path, name: str) -> subprocess.Popen:
    """`process` once it listens on `port` (stopped, with its log in the error, if it never does)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the {name} server exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.1)
    server_stop(process)
    raise RuntimeError(f"the {name} server did not listen within 60 s:\n{log.read_text()[-3000:]}")


def server_start(*, port: int, database_url: str, redis_url: str, log: Path) -> subprocess.Popen:
    env = full_mode_env(database_url=database_url, redis_url=redis_url)
    command = [sys.executable, "-m", "uvicorn", "offerhub.asgi:application"]
    command += ["--host", HOST, "--port", str(port), "--no-access-log", "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return server_wait(process, port=port, log=log, name="uvicorn")


def server_stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- The subscribers -----------------------------------------------------------------------


class Subscriber:
    """One stream: the id and receipt time (perf_counter) of every event frame, in order."""

    def __init__(self, secret: str):
        self.secret = secret
        self.received: list[tuple[str, float]] = []
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task | None = None
        self.error: str = ""
        self.ended = False

    async def open(self, port: int) -> None:
        reader, self.writer = await asyncio.open_connection(HOST, port)
        self.writer.write(
            f"GET /api/v1/events HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {self.secret}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 200:
            body = await asyncio.wait_for(reader.read(2000), 5)
            raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
        chunked = b"transfer-encoding: chunked" in head.lower()
        self.task = asyncio.create_task(self._read(reader, chunked))

    async def _read(self, reader: asyncio.StreamReader, chunked: bool) -> None:
        pending = b""
        try:
            while True:
                if chunked:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        break
                    data = (await reader.readexactly(size + 2))[:-2]
                else:
                    data = await reader.read(65536)
                    if not data:
                        break
                now = time.perf_counter()
                pending += data
                while b"\n\n" in pending:
                    frame, pending = pending.split(b"\n\n", 1)
                    if frame.startswith(b"id: "):
                        self.received.append((frame[4:].split(b"\n", 1)[0].decode(), now))
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            self.error = repr(error)
        finally:
            self.ended = True

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.wait_closed()


class ClientLoop:
    """An asyncio loop on one thread for every subscriber; coroutines are submitted to it."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sse-subscribers", daemon=True)
        self.thread.start()

    def run(self, coroutine, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


async def open_all(subscribers: list[Subscriber], port: int) -> tuple[float, list[str]]:
    """Open every stream at once; the seconds until the last one's 200 arrived, and failures."""
    started = time.perf_counter()
    results = await asyncio.gather(*(s.open(port) for s in subscribers), return_exceptions=True)
    elapsed = time.perf_counter() - started
    return elapsed, [repr(r) for r in results if isinstance(r, BaseException)]


async def close_all(subscribers: list[Subscriber]) -> None:
    await asyncio.gather(*(s.close() for s in subscribers), return_exceptions=True)


def nofile_raise(needed: int) -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise RuntimeError(f"ulimit -n: the hard limit {hard} is below the {needed} descriptors the phase needs")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))  # the server subprocess inherits it
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


# --- The phase -----------------------------------------------------------------------------


def bench_event_stream(
    *,
    port: int,
    database_url: str,
    redis_url: str,
    keys_count: int = 100,
    streams_per_key: int = 10,
    events_count: int = 50,
    spacing_seconds: float = 0.075,
) -> dict:
    import redis
    from django.db import transaction
    from django.test import override_settings

    from offerhub.services import api_key_create, event_publish

    subscribers_count = keys_count * streams_per_key
    limits = nofile_raise(subscribers_count * 2 + 1024)
    redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping()  # fail early, with a clear error
    secrets_by_key = [
        api_key_create(name=f"bench stream {n}", scopes=["read"], actor_type="SYSTEM", actor_id="bench")[1]
        for n in range(keys_count + 1)  # the last one for the warm-up streams
    ]
    log = Path(tempfile.mkdtemp(prefix="offerhub-bench-sse-")) / "uvicorn.log"
    process = server_start(port=port, database_url=database_url, redis_url=redis_url, log=log)
    client = ClientLoop()
    subscribers: list[Subscriber] = []
    # This process's own heap (Django, the earlier phases) out of its collections: a full one
    # would pause the subscribers' loop and count as latency the worker did not cause.
    gc.collect()
    gc.freeze()
    try:
        time.sleep(1)
        idle = server_figures(process.pid, database_url)
        # Warm-up: the first streams load the code paths, start the hub, the database threads
        # and the pools; the memory per subscriber is measured from after it.
        warm = [Subscriber(secrets_by_key[-1]) for _ in range(streams_per_key)]
        _, failures = client.run(open_all(warm, port), timeout=60)
        if failures:
            raise RuntimeError(f"warm-up streams refused: {failures[:3]}")
        client.run(close_all(warm), timeout=30)
        time.sleep(2)
        baseline = server_figures(process.pid, database_url)

        subscribers = [Subscriber(secrets_by_key[n // streams_per_key]) for n in range(subscribers_count)]
        connect_seconds, failures = client.run(open_all(subscribers, port), timeout=300)
        if failures:
            raise RuntimeError(f"{len(failures)} of {subscribers_count} streams failed to open: {failures[:3]}")
        time.sleep(2)
        opened = server_figures(process.pid, database_url)
        opened["redis_last_commands"] = redis_last_commands(redis_url)

        # Delivery: events committed one by one from this process; delivery (eager tasks) sequences
        # them and publishes the Redis notification that wakes the server's hub.
        committed_at: dict[str, float] = {}
        event_ids: list[str] = []
        cpu_before = proc_cpu_seconds(process.pid)
        collections: list[tuple[int, float, float]] = []  # this process's (generation, start, seconds)

        def on_collection(phase: str, info: dict) -> None:
            if phase == "start":
                on_collection.started = time.perf_counter()
            else:
                elapsed = time.perf_counter() - on_collection.started
                collections.append((info["generation"], on_collection.started, elapsed))

        gc.callbacks.append(on_collection)
        with override_settings(REDIS_URL=redis_url):
            started = time.perf_counter()
            for n in range(events_count):
                delay = started + n * spacing_seconds - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                commit = []
                with transaction.atomic():
                    transaction.on_commit(lambda commit=commit: commit.append(time.perf_counter()))  # runs first
                    event = event_publish(
                        type="bench.tick", aggregate_type="Order", aggregate_id=f"ord_bench{n}", payload={"n": n}
                    )
                event_ids.append(event.event_id)
                committed_at[event.event_id] = commit[0]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(len(s.received) < events_count for s in subscribers):
            time.sleep(0.05)
        time.sleep(0.5)  # a duplicate or a stray event arriving late is seen too
        cpu_seconds = proc_cpu_seconds(process.pid) - cpu_before
        gc.callbacks.remove(on_collection)
        during = server_figures(process.pid, database_url)

        faulty = [
            (n, [event_id for event_id, _ in s.received], s.error)
            for n, s in enumerate(subscribers)
            if [event_id for event_id, _ in s.received] != event_ids
        ]
        latencies = sorted(at - committed_at[event_id] for s in subscribers for event_id, at in s.received)
        spreads, per_event = [], []
        for event_id in event_ids:
            times = sorted(at for s in subscribers for got, at in s.received if got == event_id)
            if times:
                spreads.append(times[-1] - times[0])
                first, last = times[0] - committed_at[event_id], times[-1] - committed_at[event_id]
                per_event.append((round(first * 1000, 1), round(last * 1000, 1)))
        client.run(close_all(subscribers), timeout=60)
        subscribers = []
        time.sleep(3)
        closed = server_figures(process.pid, database_url)
    finally:
        if subscribers:
            try:
                client.run(close_all(subscribers), timeout=60)
            except Exception as error:  # the server is stopped next anyway
                print(f"event stream bench: closing the streams failed: {error!r}", file=sys.stderr)
        client.stop()
        server_stop(process)
        gc.unfreeze()
    deliveries = subscribers_count * events_count
    result = {
        "keys": keys_count,
        "per_key": streams_per_key,
        "subscribers": subscribers_count,
        "events": events_count,
        "spacing_ms": spacing_seconds * 1000,
        "nofile": limits[0],
        "idle": idle,
        "baseline": baseline,
        "opened": opened,
        "during": during,
        "closed": closed,
        "per_subscriber_kib": (opened["rss_kib"] - baseline["rss_kib"]) / subscribers_count,
        "connect_seconds": connect_seconds,
        "deliveries_expected": deliveries,
        "deliveries": len(latencies),
        "faulty": faulty,
        "p50_ms": percentile(latencies, 0.50) * 1000 if latencies else float("nan"),
        "p99_ms": percentile(latencies, 0.99) * 1000 if latencies else float("nan"),
        "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
        "spread_median_ms": statistics.median(spreads) * 1000 if spreads else float("nan"),
        "server_cpu_seconds": cpu_seconds,
        "per_event_ms": per_event,  # (first, last subscriber) latency of each event
        # when (ms after the first commit) this process paused over 5 ms to collect garbage, and for how long
        "bench_collections": [
            (generation, round((at - started) * 1000), round(seconds * 1000, 1))
            for generation, at, seconds in collections
            if seconds > 0.005
        ],
        "commits_ms": [round((committed_at[event_id] - started) * 1000) for event_id in event_ids],
        "log": str(log),
    }
    if faulty:
        n, got, error = faulty[0]
        missing = [event_id for event_id in event_ids if event_id not in got]
        raise AssertionError(
            f"event stream bench: {len(faulty)} of {subscribers_count} subscribers did not get the {events_count} "
            f"events exactly once in order (subscriber {n}: {len(got)} received, {len(missing)} missing, "
            f"{len(got) - len(set(got))} duplicates, error {error!r}); figures so far: {result}"
        )
    return result


def event_stream_section(result: dict) -> list[str]:
    """The docs/benchmarks.md section for bench_event_stream's figures."""
    idle, base, opened, closed = result["idle"], result["baseline"], result["opened"], result["closed"]
    commands = opened.get("redis_last_commands", {})

    def mib(kib: int) -> str:
        return f"{kib / 1024:.1f}"

    return [
        f"## Event stream: {result['subscribers']:,} subscribers on one worker",
        "",
        f"One uvicorn worker process serving `offerhub.asgi:application` in full mode as production runs it "
        "(DEBUG off, PostgreSQL, Redis), and "
        f"{result['subscribers']:,} `GET /api/v1/events` streams opened at once from the bench process: "
        f"{result['keys']} API keys x {result['per_key']} streams, so the default per-key cap "
        f"({result['per_key']}, a Redis sorted set) is in force. The subscribers are one asyncio loop "
        "(HTTP/1.1, chunked decoding; no thread per stream). Then "
        f"{result['events']} events are committed one by one from the bench process, "
        f"{result['spacing_ms']:.0f} ms apart; their delivery (the bench's tasks run in process) positions "
        "them and publishes the Redis notification that wakes the server's hub, which reads them once and "
        "offers them to every stream. Latency runs from each event's commit (an on-commit hook registered "
        "before the event's own) to the moment a subscriber read its frame off the socket, over all "
        f"{result['deliveries']:,} deliveries; every subscriber got every event exactly once, in order "
        "(checked: the bench fails otherwise). Server and subscribers share the machine's 2 cores. "
        "Memory per subscriber is the worker's RSS with the streams open less its RSS after 10 warm-up "
        "streams were opened and closed (code loaded, hub, database threads and pools started); "
        "PostgreSQL and Redis connections are the worker's own sockets (pg_stat_activity by client port).",
        "",
        "| | worker RSS (MiB) | threads | PostgreSQL connections | Redis connections |",
        "|---|---:|---:|---:|---:|",
        f"| started, no stream yet | {mib(idle['rss_kib'])} | {idle['threads']} | {idle['pg']} | {idle['redis']} |",
        f"| after the warm-up streams closed | {mib(base['rss_kib'])} | {base['threads']} | {base['pg']} "
        f"| {base['redis']} |",
        f"| {result['subscribers']:,} streams open | {mib(opened['rss_kib'])} | {opened['threads']} | "
        f"{opened['pg']} | {opened['redis']} |",
        f"| all closed again | {mib(closed['rss_kib'])} | {closed['threads']} | {closed['pg']} | {closed['redis']} |",
        "",
        "The worker's Redis connections are pooled per process, not per stream: with the streams open, by last "
        f"command, {commands.get('incrby', 0) + commands.get('incr', 0):,} the rate limiter's (INCR), "
        f"{commands.get('evalsha', 0):,} the stream cap's (EVALSHA; a pool of at most 8) and "
        f"{commands.get('subscribe', 0)} the hub's wake-up (SUBSCRIBE).",
        "",
        "| streams | memory per stream (KiB) | connect all (s) | deliveries | latency p50 (ms) | p99 (ms) "
        "| max (ms) | first to last stream, median (ms) | worker CPU for the events (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {result['subscribers']:,} | {result['per_subscriber_kib']:.1f} | {result['connect_seconds']:.2f} | "
        f"{result['deliveries']:,} | {result['p50_ms']:.1f} | {result['p99_ms']:.1f} | {result['max_ms']:.1f} | "
        f"{result['spread_median_ms']:.1f} | {result['server_cpu_seconds']:.2f} |",
        "",
        "Connect all: from the first connection attempt to the last stream's `200` (authentication, rate "
        "limit, cursor and cap checks for every stream, through the worker's "
        "`OFFERHUB_SSE_DB_THREADS` database threads). First to last stream: per event, from the first "
        "subscriber's receipt to the last one's: the worker's fan-out to every stream, plus the subscribers' own "
        "reading on their one loop. Worker CPU: its user and system time from the first commit until every "
        "subscriber had every event.",
    ]
