"""`make bench`, load phase: HTTP reads under 64 keep-alive connections, as ratios to a bare DRF view.

The server is the production HTTP configuration (docs/deployment.md): gunicorn with
docker/gunicorn.conf.py (gthread, WEB_CONCURRENCY x WEB_THREADS at their defaults) serving
`offerhub.wsgi:application` in full mode (DEBUG off, PostgreSQL with the default pool, Redis).
Its settings are the product's plus a bench-only URLconf (tests/benchmarks/load_urls.py) that
adds `bench/bare`, the floor. The load generator is one asyncio loop in this process (raw
HTTP/1.1 on keep-alive connections; no external tool). The server, its database and Redis
and the generator share the machine.
"""

import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.benchmarks.sse import (
    HOST,
    PG_PORT,
    REDIS_PORT,
    ROOT,
    full_mode_env,
    percentile,
    proc_cpu_seconds,
    proc_status,
    proc_tcp,
    server_stop,
    server_wait,
)

CONNECTIONS = 64
# Per run; every target is run PAIRS times, each between two runs of the floor.
WARMUP_SECONDS = 0.5
DURATION_SECONDS = 1.5
PAIRS = 6
ORDERS = 1_000
LISTINGS = 200
# The bench's one API key sends every API request: the per-key limit (100 a minute by default)
# is raised for the run, or the bench would measure 429s.
RATE_LIMIT = 100_000_000
# docker/gunicorn.conf.py's WEB_THREADS and settings' DATABASE_POOL_MAX_SIZE defaults (sandbox off),
# which the server runs with (the bench unsets both).
GUNICORN_THREADS, POOL_MAX_SIZE = 4, 10


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


# --- Data ----------------------------------------------------------------------------------


def load_data(*, secret_key: str) -> dict:
    """A buyer with ORDERS orders and a funded balance, LISTINGS listings, a read-scope API key and
    the buyer's session cookie (signed with the server's SECRET_KEY) and a CSRF cookie, the two a
    browser keeps after its first page."""
    from django.conf import settings
    from django.db import connection
    from django.middleware.csrf import CSRF_ALLOWED_CHARS, CSRF_SECRET_LENGTH
    from django.test import Client, override_settings
    from django.utils.crypto import get_random_string

    from marketplace.models import Listing, Order, User
    from marketplace.orders import SYSTEM, order_create
    from offerhub.services import api_key_create
    from payments.ledger import ledger_account, ledger_post, user_accounts
    from payments.models import LedgerAccount
    from tests.factories import CategoryFactory, ListingFactory

    buyer = User.objects.create_user("load-buyer@example.test", None, display_name="Load buyer")
    seller = User.objects.create_user("load-seller@example.test", None, display_name="Load seller")
    available, _ = user_accounts(buyer)
    external = ledger_account(kind=LedgerAccount.Kind.EXTERNAL_STELLAR)
    ledger_post(
        idempotency_key="bench:load:fund",
        kind="bench",
        lines=[(external, -10_000 * 10_000_000), (available, 10_000 * 10_000_000)],
    )
    # One order through the service (its audit row and event), the rest its copies in one INSERT.
    first, _ = order_create(buyer=buyer, seller=seller, amount=10 * 10_000_000, title="Load order 0", actor=SYSTEM)
    Order.objects.bulk_create(
        Order(buyer=buyer, seller=seller, amount=first.amount + n, title=f"Load order {n}") for n in range(1, ORDERS)
    )
    category = CategoryFactory()
    for n in range(LISTINGS):
        ListingFactory(seller=seller, category=category, title=f"Load listing {n} logo design", price_cents=1_000 + n)
    _, api_secret = api_key_create(name="bench load", scopes=["read"], actor_type="SYSTEM", actor_id="bench")
    # Statistics as autovacuum keeps them on a live database: without them the planner takes the
    # 1,000 freshly loaded orders for a handful and reads them all to sort them for a page of 20.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    with override_settings(SECRET_KEY=secret_key):
        client = Client()
        client.force_login(buyer)
        session = client.cookies[settings.SESSION_COOKIE_NAME].value
    # What CsrfViewMiddleware sets on a first page and the browser sends back (its secret); without
    # it every page would make and set a new one, which no browser asks for twice.
    csrf_secret = get_random_string(CSRF_SECRET_LENGTH, allowed_chars=CSRF_ALLOWED_CHARS)
    return {
        "buyer": buyer.public_id,
        "api_secret": api_secret,
        "session": session,
        "csrf_secret": csrf_secret,
        "orders": Order.objects.filter(buyer=buyer).count(),
        # the full `make bench` has loaded listings of its own before (the page latency phase)
        "listings": Listing.objects.filter(status=Listing.Status.ACTIVE).count(),
    }


def targets_for(data: dict) -> list[tuple[str, str, dict]]:
    """(label, path, headers) of every target; the first is the floor."""
    api = {"Authorization": f"Bearer {data['api_secret']}", "Accept": "application/json"}
    cookies = f"sessionid={data['session']}; csrftoken={data['csrf_secret']}"
    logged_in = {"Cookie": cookies, "Accept": "text/html"}
    visitor = {"Cookie": f"csrftoken={data['csrf_secret']}", "Accept": "text/html"}
    return [
        ("bare DRF view (floor)", "/bench/bare", {}),
        ("GET /api/v1/health", "/api/v1/health", {}),
        ("balance", f"/api/v1/users/{data['buyer']}/balance", api),
        (f"orders list, 20 of {data['orders']:,}", f"/api/v1/orders?buyer_id={data['buyer']}&limit=20", api),
        (f"listings page ({data['listings']} listings, logged in)", "/listings/", logged_in),
        ("home page (logged in)", "/", logged_in),
        # Most of a marketplace's catalogue traffic: visitors not logged in (no session to read).
        ("listings page, not logged in", "/listings/", visitor),
    ]


# --- The server ----------------------------------------------------------------------------


def gunicorn_start(*, port: int, env: dict, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "gunicorn", "--config", "docker/gunicorn.conf.py", "offerhub.wsgi:application"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return server_wait(process, port=port, log=log, name="gunicorn")


def process_tree(pid: int) -> list[int]:
    """`pid` and its children (gunicorn's master and workers)."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            pids += [int(child) for child in (task / "children").read_text().split()]
    return pids


class Sampler:
    """Every 0.25 s while running: the server's processes, threads and PostgreSQL/Redis sockets.
    New connections are counted by PostgreSQL (pg_stat_database.sessions) and, for Redis, as the
    distinct local ports seen (a lower bound: a connection opened and closed between two samples
    is missed)."""

    def __init__(self, pid: int, database_url: str):
        self.pid, self.database_url = pid, database_url
        self.database_name = database_url.rsplit("/", 1)[1].split("?")[0]
        self.samples: list[dict] = []
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def sample(self, conn) -> dict:
        pids = process_tree(self.pid)
        established = [s for pid in pids for s in proc_tcp(pid) if s[2] == "01"]
        pg_ports = [local for local, remote, _ in established if remote == PG_PORT]
        pg = conn.execute(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE state = 'active') FROM pg_stat_activity "
            "WHERE datname = %s AND client_port = ANY(%s)",
            [self.database_name, pg_ports],
        ).fetchone()
        return {
            "processes": len(pids),
            "threads": sum(proc_status(pid)["Threads"] for pid in pids),
            "pg": pg[0],
            "pg_active": pg[1],
            "pg_ports": set(pg_ports),
            "redis_ports": {local for local, remote, _ in established if remote == REDIS_PORT},
        }

    def sessions(self, conn) -> int:
        query = "SELECT sessions FROM pg_stat_database WHERE datname = %s"
        return conn.execute(query, [self.database_name]).fetchone()[0]

    def start(self) -> None:
        import psycopg

        self.samples = []
        self.stopping.clear()
        self.conn = psycopg.connect(self.database_url, autocommit=True)
        self.sessions_before = self.sessions(self.conn)

        def run():
            while not self.stopping.wait(0.25):
                with contextlib.suppress(OSError, FileNotFoundError):
                    self.samples.append(self.sample(self.conn))

        self.thread = threading.Thread(target=run, name="load-sampler", daemon=True)
        self.thread.start()

    def stop(self) -> dict:
        self.stopping.set()
        self.thread.join(5)
        new_sessions = self.sessions(self.conn) - self.sessions_before
        self.conn.close()
        samples = self.samples or [{"processes": 0, "threads": 0, "pg": 0, "pg_active": 0}]
        pg_ports = set().union(*(s.get("pg_ports", set()) for s in samples))
        redis_ports = set().union(*(s.get("redis_ports", set()) for s in samples))
        return {
            "processes": max(s["processes"] for s in samples),
            "threads": max(s["threads"] for s in samples),
            "pg_max": max(s["pg"] for s in samples),
            "pg_active_max": max(s["pg_active"] for s in samples),
            "pg_new_sessions": new_sessions,  # the sampler's own connection was open before
            "pg_ports_seen": len(pg_ports),
            "redis_max": max(len(s.get("redis_ports", ())) for s in samples),
            "redis_ports_seen": len(redis_ports),
        }


# --- The load generator --------------------------------------------------------------------


class Tally:
    def __init__(self):
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.errors: dict[str, int] = {}
        self.bytes = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def response_read(reader: asyncio.StreamReader) -> tuple[int, int, bool]:
    """(status, body bytes, keep-alive) of one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, chunked, keep = 0, False, True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and value.strip().lower() == b"close":
            keep = False
    if chunked:
        length = 0
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            length += size
            if size == 0:
                break
    else:
        await reader.readexactly(length)
    return status, length, keep


async def connection_loop(port: int, request: bytes, measure_from: float, stop_at: float, tally: Tally) -> None:
    reader = writer = None
    while time.perf_counter() < stop_at:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(HOST, port)
            started = time.perf_counter()
            writer.write(request)
            status, size, keep = await asyncio.wait_for(response_read(reader), 30)
            ended = time.perf_counter()
            if started >= measure_from and ended <= stop_at:
                tally.latencies.append(ended - started)
                tally.statuses[status] = tally.statuses.get(status, 0) + 1
                tally.bytes += size
                if not 200 <= status < 300:
                    tally.error(f"HTTP {status}")
            if not keep:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as error:
            if time.perf_counter() >= measure_from:
                tally.error(type(error).__name__)
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def load_run(port: int, path: str, headers: dict, *, connections: int, warmup: float, duration: float) -> Tally:
    lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}:{port}", "X-Forwarded-Proto: https", "User-Agent: offerhub-bench"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    tally = Tally()
    now = time.perf_counter()
    measure_from, stop_at = now + warmup, now + warmup + duration
    await asyncio.gather(*(connection_loop(port, request, measure_from, stop_at, tally) for _ in range(connections)))
    return tally


def probe(port: int, path: str, headers: dict) -> tuple[int, bytes]:
    """One request, before the load: the status and the start of the body (a misconfigured target fails early)."""

    async def once():
        reader, writer = await asyncio.open_connection(HOST, port)
        lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}:{port}", "X-Forwarded-Proto: https", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        return int(data[9:12]), data.split(b"\r\n\r\n", 1)[-1][:300]

    return asyncio.run(once())


# --- The phase -----------------------------------------------------------------------------


def target_run(
    process, sampler, port: int, path: str, headers: dict, *, connections: int, warmup: float, duration: float
) -> dict:
    """One run of one target: its figures (bench_load's rows)."""
    pids = process_tree(process.pid)
    cpu_before = sum(proc_cpu_seconds(pid) for pid in pids)
    own_before = time.process_time()
    sampler.start()
    tally = asyncio.run(load_run(port, path, headers, connections=connections, warmup=warmup, duration=duration))
    figures = sampler.stop()
    server_cpu = sum(proc_cpu_seconds(pid) for pid in process_tree(process.pid)) - cpu_before
    own_cpu = time.process_time() - own_before
    count = len(tally.latencies)
    time.sleep(0.2)  # the last answers' connections closed
    return {
        "latencies": tally.latencies,
        "requests": count,
        "per_second": count / duration,
        "errors": sum(tally.errors.values()),
        "error_kinds": tally.errors,
        "statuses": tally.statuses,
        "body_bytes": tally.bytes / count if count else 0,
        # over warm-up and measurement alike
        "server_cpu_per_request_ms": server_cpu / max(1, count) * 1000 * duration / (warmup + duration),
        "generator_cpu_share": own_cpu / (warmup + duration),
        "load_average": os.getloadavg()[0],  # the machine's, over the last minute
        **figures,
    }


def runs_summary(label: str, path: str, runs: list[dict], ratios: list[float]) -> dict:
    """A target's row over its runs: medians of their figures and of their ratios to the floor's
    runs around them (none for the floor itself), percentiles over all its requests, the worst of
    the connection counts."""
    latencies = sorted(latency for run in runs for latency in run["latencies"])

    def median(name):
        return statistics.median(run[name] for run in runs)

    return {
        "label": label,
        "path": path,
        "per_second": median("per_second"),
        "per_second_runs": [run["per_second"] for run in runs],
        "ratio": statistics.median(ratios) if ratios else 1.0,
        "ratio_runs": ratios,
        "p50_ms": percentile(latencies, 0.50) * 1000 if latencies else float("nan"),
        "p99_ms": percentile(latencies, 0.99) * 1000 if latencies else float("nan"),
        "errors": sum(run["errors"] for run in runs),
        "error_kinds": [run["error_kinds"] for run in runs if run["error_kinds"]],
        "server_cpu_per_request_ms": median("server_cpu_per_request_ms"),
        "generator_cpu_share": median("generator_cpu_share"),
        "load_average": median("load_average"),
        **{name: max(run[name] for run in runs) for name in ("processes", "threads", "pg_max", "redis_max")},
        "pg_new_sessions": sum(run["pg_new_sessions"] for run in runs),
    }


def bench_load(
    *,
    database_url: str,
    redis_url: str,
    connections: int = CONNECTIONS,
    warmup: float = WARMUP_SECONDS,
    duration: float = DURATION_SECONDS,
    pairs: int = PAIRS,
) -> dict:
    import psycopg
    import redis

    redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping()  # fail early, with a clear error
    redis.Redis.from_url(redis_url).flushdb()  # the rate-limit counters of an earlier run
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="offerhub-bench-load-"))
    env = full_mode_env(database_url=database_url, redis_url=redis_url)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "tests.benchmarks.load_settings",
            "PORT": str(port),
            "OFFERHUB_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT),
            "STATIC_ROOT": str(workdir / "static"),
            "PYTHONPATH": str(ROOT),
        }
    )
    for name in ("WEB_CONCURRENCY", "WEB_THREADS", "DATABASE_POOL_MAX_SIZE", "DATABASE_CONN_MAX_AGE"):
        env.pop(name, None)  # the defaults docs/deployment.md describes
    data = load_data(secret_key=env["SECRET_KEY"])
    # DEBUG off serves the manifest's hashed static names (as the image's collectstatic leaves them).
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    log = workdir / "gunicorn.log"
    process = gunicorn_start(port=port, env=env, log=log)
    sampler = Sampler(process.pid, database_url)
    try:
        time.sleep(2)
        with psycopg.connect(database_url, autocommit=True) as conn:
            idle = sampler.sample(conn)
        for _, path, headers in targets_for(data):
            status, body = probe(port, path, headers)
            if status != 200:
                raise RuntimeError(f"load bench: {path} answered {status} before the load: {body!r}")
        targets = targets_for(data)
        # Short runs, the floor's and the target's in turn: this machine's speed drifts by a fifth
        # from one run of the floor to the next (other work on the host), over seconds, so each of
        # the target's runs is compared with the floor's just before and after it, and the median
        # of those ratios is reported.
        (floor_label, *floor_request), runs = targets[0], {label: [] for label, _, _ in targets}
        ratios: dict[str, list[float]] = {label: [] for label, _, _ in targets}

        def one(path, headers):
            return target_run(
                process, sampler, port, path, headers, connections=connections, warmup=warmup, duration=duration
            )

        for label, path, headers in targets[1:]:
            print(f"  load: {label}, {pairs} runs between the floor's…", flush=True)
            before = one(*floor_request)
            runs[floor_label].append(before)
            for _ in range(pairs):
                run, after_ = one(path, headers), one(*floor_request)
                runs[label].append(run)
                runs[floor_label].append(after_)
                ratios[label].append(run["per_second"] / ((before["per_second"] + after_["per_second"]) / 2))
                before = after_
            print(f"    ratios {', '.join(f'{ratio:.0%}' for ratio in ratios[label])}", flush=True)
        with psycopg.connect(database_url, autocommit=True) as conn:
            after = sampler.sample(conn)
    finally:
        server_stop(process)
    rows = [runs_summary(label, path, runs[label], ratios[label]) for label, path, _ in targets]
    return {
        "connections": connections,
        "warmup": warmup,
        "duration": duration,
        "workers": rows[0]["processes"] - 1,
        "threads": GUNICORN_THREADS,
        "pool_max": POOL_MAX_SIZE,
        "rate_limit": RATE_LIMIT,
        "idle": {name: value for name, value in idle.items() if not name.endswith("_ports")},
        "after": {name: value for name, value in after.items() if not name.endswith("_ports")},
        "rows": rows,
        "pairs": pairs,
        "floor_runs": [run["per_second"] for run in runs[floor_label]],
        "data": {name: value for name, value in data.items() if name not in ("api_secret", "session", "csrf_secret")},
        "env": {name: env[name] for name in ("DJANGO_SETTINGS_MODULE", "OFFERHUB_RATE_LIMIT_PER_MINUTE")},
        "log": str(log),
    }


def _ratio_range(row: dict) -> str:
    ratios = row["ratio_runs"]
    return f"{min(ratios) * 100:.0f}-{max(ratios) * 100:.0f} %" if ratios else "-"


def load_section(result: dict) -> list[str]:
    """The docs/benchmarks.md section for bench_load's figures."""
    rows = result["rows"]
    lines = [
        "## HTTP reads under load",
        "",
        "The production HTTP configuration (`docs/deployment.md`): gunicorn with `docker/gunicorn.conf.py` "
        f"(`gthread`, {result['workers']} worker processes x {result['threads']} threads, the "
        "`WEB_CONCURRENCY` and `WEB_THREADS` defaults, access log on) serving `offerhub.wsgi:application` in full "
        "mode: DEBUG off, PostgreSQL with the default pool (`DATABASE_POOL_MAX_SIZE` "
        f"{result['pool_max']} per process), Redis (cache, rate limits), `OFFERHUB_SANDBOX` off. The floor is "
        "`bench/bare`, a DRF `APIView` with no authentication, permission or database, served by the same "
        "processes (a bench-only URLconf, `tests/benchmarks/load_urls.py`, includes the product's URLs). "
        f"The load generator is one asyncio loop in the bench process: {result['connections']} HTTP/1.1 "
        "keep-alive connections, each sending its next request when the last answer is read. "
        f"**Runs in turn:** every target is run {result['pairs']} times, each run ({result['warmup']:.1f} s of "
        f"warm-up, then {result['duration']:.1f} s measured) between two runs of the floor, and its ratio is to "
        "the mean of those two; the table gives the median of its ratios and of its other figures. This "
        "machine's speed drifts by up to a fifth from one run of the floor to the next, over seconds (other "
        f"work on the host; the floor's runs here: {min(result['floor_runs']):,.0f} to "
        f"{max(result['floor_runs']):,.0f} req/s), so a ratio of two runs minutes apart is mostly that drift. "
        "Requests carry "
        "`X-Forwarded-Proto: https` as the TLS proxy would (gunicorn believes 127.0.0.1). Data: one buyer with "
        f"{result['data']['orders']:,} orders and a funded balance, {result['data']['listings']} active listings (12 "
        "a page); API reads use one "
        "read-scope API key (its rate limit raised for the run with "
        f"`OFFERHUB_RATE_LIMIT_PER_MINUTE={result['rate_limit']:,}`; by default 100 a minute would answer 429), "
        "the pages the buyer's session and CSRF cookies (as a browser keeps them after its first page). "
        "No Celery worker runs (reads queue no task). "
        "**The machine has 2 cores, shared by the server, PostgreSQL, Redis and the load generator** (its CPU "
        "share is in the last column), so absolute figures are low and the ratios are what to compare.",
        "",
        "| target | req/s | ratio to bare | runs' ratios | p50 (ms) | p99 (ms) | errors | server CPU per request (ms) "
        "| PostgreSQL connections (max) | new PostgreSQL sessions | Redis connections (max) | generator CPU "
        "| load average |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['label']} | {row['per_second']:,.0f} | {row['ratio'] * 100:.0f} % | {_ratio_range(row)} "
            f"| {row['p50_ms']:.1f} "
            f"| {row['p99_ms']:.1f} | {row['errors']} | {row['server_cpu_per_request_ms']:.2f} | {row['pg_max']} "
            f"| {row['pg_new_sessions']} | {row['redis_max']} | {row['generator_cpu_share'] * 100:.0f} % "
            f"| {row['load_average']:.1f} |"
        )
    idle, after = result["idle"], result["after"]
    lines += [
        "",
        f"Server processes: {rows[0]['processes']} (gunicorn's master and its workers), "
        f"{max(r['threads'] for r in rows)} threads at most during the load ({idle['threads']} started, idle; "
        f"{after['threads']} after the last target). "
        "PostgreSQL connections are the server's own sockets (pg_stat_activity by client port), sampled every "
        "0.25 s; new sessions are pg_stat_database's count over the target's run (warm-up included). "
        "Server CPU per request is its processes' user + system time over the run divided by the requests "
        "(the warm-up's counted at the measured rate). Errors: non-2xx answers and connection errors. "
        "Each ratio is the median of the target's runs' ratios to the floor's runs around them (the floor's "
        "row: all its runs); the load average (1 min) is the machine's at the end of the runs (their median), "
        "other work on it included: above 2, other processes "
        "competed for the cores. PostgreSQL connections are "
        f"pooled per process (at most {result['pool_max']}; a thread holds one during its request), so they stop at "
        "workers x threads; the new sessions of the first target that uses the database are the pools growing "
        "from their minimum of one. Redis connections: the rate limiter's client keeps one per thread that "
        "used it at once (the session-authenticated pages do not touch Redis), and each worker one more, "
        "subscribed to API key revocations (offerhub/api/authentication.py).",
        "",
        "Where an authenticated read's time goes above the floor's: an API read checks its key (kept per process), "
        "its rate limit (leases of a Redis counter) and runs one prepared statement; a catalogue page is served "
        "from the per-process page cache (docs/marketplace.md) and runs one prepared statement: for a visitor "
        "with a session, the session joined with its member and the catalogue's version "
        "(marketplace/sessions.py); for one without, the version alone. The round trip to PostgreSQL costs "
        "server CPU beyond PostgreSQL's own, and more under threads, each wait on the database handing the GIL "
        "to another thread: in process (`BENCH_PROFILE_FIGURES_ONLY=1 python -m tests.benchmarks.load_profile`, "
        "the test client's own cost included), a balance read took 0.68 ms of CPU from one thread and 1.14 ms "
        "from eight at once, a logged-in listings page 0.74 and 1.10 ms, the bare view 0.38 and 0.52 ms.",
    ]
    return lines
