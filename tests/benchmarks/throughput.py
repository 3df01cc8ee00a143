"""`make bench`, throughput phase: whole order lifecycles over the REST API, 1 client, then 4.

Full mode as docs/deployment.md runs it, on one machine: gunicorn (docker/gunicorn.conf.py,
DEBUG off) serves the API, a Celery worker with 4 processes runs the escrow steps, Redis is the
broker. The providers are the sandbox, served by a uvicorn process of its own on the same
database (its Trustless Work rate limit lifted), mounted under /providers/ because the
platform refuses provider URLs under /sandbox/ with DEBUG off. Each client is a thread of this
process with its own buyer and seller (every buyer's wallet signs its own fund and approval;
the escrow's platform signer, one of OFFERHUB_PLATFORM_SIGNERS, signs its deploy and release) and
runs, one after another:
create (one milestone) → reserve → deploy the escrow → fund it → mark the milestone delivered →
release it, each call waiting for its outcome as the API does (201/200; a 202 is counted and
followed by GETs until the step is done). Machine CPU is sampled over each run: the clients,
server, workers, sandbox, PostgreSQL and Redis share its cores.
"""

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

from tests.benchmarks.load import free_port, gunicorn_start, process_tree
from tests.benchmarks.sse import HOST, ROOT, full_mode_env, percentile, proc_cpu_seconds, server_stop, server_wait

CLIENTS = 4
ORDERS_ONE_CLIENT = 12
ORDERS_PER_CLIENT = 8
ORDERS_SLOW = 4  # per client, with the providers' latency
TW_LATENCY_MS, SUBMISSION_LATENCY_MS = 150, 1000
FAST, SLOW = "sandbox at full speed", "with providers' latency"
WORKER_PROCESSES = int(os.environ.get("BENCH_WORKER_PROCESSES", "4"))
AMOUNT = "10.00"
STEPS = ("create", "reserve", "deploy", "fund", "deliver", "release")
CELERY_WORKER = [sys.executable, "-m", "celery", "-A", "offerhub", "worker", "--loglevel", "INFO"]
UVICORN = [sys.executable, "-m", "uvicorn", "offerhub.asgi:application", "--lifespan", "off", "--log-level", "warning"]
# Every lifecycle sends about 8 API requests; the bench's key must not meet the per-key limit.
RATE_LIMIT = 100_000_000


def sandbox_env(*, database_url: str, port: int) -> dict[str, str]:
    """The sandbox process: development settings (the sandbox needs DEBUG) on the bench database."""
    env = {
        **os.environ,
        "ENV_FILE": "",
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "tests.benchmarks.throughput_sandbox_settings",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_URL", None)
    return env


def platform_env(*, database_url: str, redis_url: str, port: int) -> dict:
    """The platform's processes: production settings, with this process's providers and wallet keys."""
    from django.conf import settings

    env = full_mode_env(database_url=database_url, redis_url=redis_url)
    env["TRUSTLESS_WORK_API_URL"] = settings.TRUSTLESS_WORK_API_URL
    env["STELLAR_HORIZON_URL"] = settings.STELLAR_HORIZON_URL
    env.update(
        {
            "PORT": str(port),
            "OFFERHUB_WALLET_KEYS": ",".join(settings.OFFERHUB_WALLET_KEYS),  # this process made the wallets
            "OFFERHUB_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT),
        }
    )
    for name in ("WEB_CONCURRENCY", "WEB_THREADS", "DATABASE_POOL_MAX_SIZE", "CELERY_TASK_ALWAYS_EAGER"):
        env.pop(name, None)
    return env


# --- Data ----------------------------------------------------------------------------------


def members_create(count: int, *, orders_each: int) -> list[tuple[str, str]]:
    """`count` (buyer, seller) pairs with active wallets, each buyer credited enough USDC."""
    from marketplace.models import User
    from payments.balances import sandbox_mint
    from payments.deposits import deposits_sync
    from payments.wallets import wallet_ensure

    pairs = []
    for n in range(count):
        buyer = User.objects.create_user(f"tp-buyer-{n}@example.test", None, display_name=f"Buyer {n}")
        seller = User.objects.create_user(f"tp-seller-{n}@example.test", None, display_name=f"Seller {n}")
        wallet_ensure(user=seller)
        sandbox_mint(wallet_ensure(user=buyer), (orders_each + 2) * 10 * 10_000_000)
        pairs.append((buyer.public_id, seller.public_id))
    deposits_sync(max_pages=100)
    return pairs


# --- The clients ---------------------------------------------------------------------------


class Client:
    """One API client: its own keep-alive session, buyer and seller."""

    def __init__(self, *, base: str, secret: str, buyer: str, seller: str):
        self.base, self.buyer, self.seller = base, buyer, seller
        self.session = requests.Session()
        # X-Forwarded-Proto as the TLS proxy sends it (production settings redirect plain HTTP)
        self.session.headers.update(
            {"Authorization": f"Bearer {secret}", "Accept": "application/json", "X-Forwarded-Proto": "https"}
        )
        self.timings: dict[str, list[float]] = {step: [] for step in STEPS}
        self.errors: list[str] = []
        self.pending = 0

    def call(self, step: str, path: str, body: dict | None = None) -> dict | None:
        started = time.perf_counter()
        response = self.session.post(
            f"{self.base}{path}", json=body or {}, headers={"Idempotency-Key": str(uuid.uuid4())}, timeout=120
        )
        if response.status_code == 202:  # the chain was slower than the wait: follow it
            self.pending += 1
            order_id = response.json()["data"]["id"]
            while self.session.get(f"{self.base}/orders/{order_id}", timeout=30).json()["data"]["status"] in (
                response.json()["data"]["status"],
            ):
                time.sleep(0.1)
        elif response.status_code not in (200, 201):
            self.errors.append(f"{step}: {response.status_code} {response.text[:200]}")
            return None
        self.timings[step].append(time.perf_counter() - started)
        return response.json()["data"]

    def lifecycle(self, n: int) -> bool:
        order = self.call(
            "create",
            "/orders",
            {
                "buyer_id": self.buyer,
                "seller_id": self.seller,
                "amount": AMOUNT,
                "title": f"Throughput {n}",
                "milestones": [{"milestone_ref": "work", "title": "The work", "amount": AMOUNT}],
            },
        )
        if order is None:
            return False
        path = f"/orders/{order['id']}"
        for step, suffix in (
            ("reserve", "/reserve"),
            ("deploy", "/escrow"),
            ("fund", "/escrow/fund"),
            ("deliver", "/milestones/work/complete"),
            ("release", "/milestones/work/release"),
        ):
            if self.call(step, path + suffix) is None:
                return False
        final = self.session.get(f"{self.base}{path}", timeout=30).json()["data"]["status"]
        if final != "CLOSED":
            self.errors.append(f"order {order['id']} ended {final}")
            return False
        return True


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def processes_named(*names: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() in names:
                    pids.append(int(entry.name))
    return pids


def cpu_by_part(parts: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each part's processes; this process: the clients."""
    used = {"clients": sum(os.times()[:2])}
    for part, pids in parts.items():
        used[part] = 0.0
        for pid in pids:
            with contextlib.suppress(OSError):
                used[part] += proc_cpu_seconds(pid)
    return used


def clients_run(clients: list[Client], orders_each: int, parts: dict[str, list[int]]) -> dict:
    before, parts_before = machine_cpu(), cpu_by_part(parts)
    started = time.perf_counter()
    done = [0] * len(clients)

    def work(index: int) -> None:
        for n in range(orders_each):
            if clients[index].lifecycle(n):
                done[index] += 1

    threads = [threading.Thread(target=work, args=(index,)) for index in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    after, parts_after = machine_cpu(), cpu_by_part(parts)
    steps = {}
    for step in STEPS:
        samples = sorted(value for client in clients for value in client.timings[step])
        steps[step] = {
            "p50_ms": statistics.median(samples) * 1000 if samples else 0.0,
            "p99_ms": percentile(samples, 0.99) * 1000 if samples else 0.0,
        }
    return {
        "clients": len(clients),
        "orders": sum(done),
        "seconds": elapsed,
        "per_second": sum(done) / elapsed,
        "errors": [error for client in clients for error in client.errors],
        "pending": sum(client.pending for client in clients),
        "cpu_busy": (after[0] - before[0]) / max(1, after[1] - before[1]),
        # CPU ms per completed order, by part (PostgreSQL and Redis serve the bench's other work too: none runs)
        "cpu_ms_per_order": {
            part: (parts_after[part] - parts_before[part]) * 1000 / max(1, sum(done)) for part in parts_after
        },
        "steps": steps,
    }


# --- The phase -----------------------------------------------------------------------------


def bench_throughput(*, database_url: str, redis_url: str, sandbox_pid: int) -> dict:
    """The sandbox (process `sandbox_pid`) must be serving where this process's provider URLs point."""
    from offerhub.services import api_key_create
    from payments.wallets import platform_bootstrap

    platform_bootstrap()
    # the first pair also runs the warm-up and every one-client run
    pairs = members_create(CLIENTS, orders_each=2 + ORDERS_ONE_CLIENT + ORDERS_PER_CLIENT + 4 * ORDERS_SLOW)
    _, secret = api_key_create(name="bench throughput", scopes=["read", "write"], actor_type="SYSTEM", actor_id="bench")
    port = free_port()
    env = platform_env(database_url=database_url, redis_url=redis_url, port=port)
    import redis

    redis.Redis.from_url(redis_url).flushdb()  # no task left over from an earlier run
    logs = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    server = gunicorn_start(port=port, env=env, log=logs / "gunicorn.log")
    base = f"http://{HOST}:{port}/api/v1"
    scenarios = {}
    try:
        # (label, worker processes, orders of the one client, orders of each of 4)
        for label, processes, orders_one, orders_each in (
            (FAST, WORKER_PROCESSES, ORDERS_ONE_CLIENT, ORDERS_PER_CLIENT),
            (SLOW, WORKER_PROCESSES, ORDERS_SLOW, ORDERS_SLOW),
            (f"{SLOW}, {2 * WORKER_PROCESSES} worker processes", 2 * WORKER_PROCESSES, ORDERS_SLOW, ORDERS_SLOW),
        ):
            if label == SLOW:
                provider_latency_add()
            worker_log = logs / f"worker-{processes}.log"
            worker = subprocess.Popen(
                [*CELERY_WORKER, "--concurrency", str(processes)],
                cwd=ROOT,
                env=env,
                stdout=worker_log.open("wb"),
                stderr=subprocess.STDOUT,
            )
            try:
                worker_wait(worker, redis_url=redis_url, log=worker_log)
                if not scenarios:  # warm-up: one lifecycle (imports, pools, connections) outside the figures
                    warm = Client(base=base, secret=secret, buyer=pairs[0][0], seller=pairs[0][1])
                    if not warm.lifecycle(-1):
                        raise RuntimeError(f"warm-up lifecycle failed: {warm.errors}")
                parts = {
                    "API server": process_tree(server.pid),
                    "workers": process_tree(worker.pid),
                    "sandbox providers": [sandbox_pid],
                    "PostgreSQL": processes_named("postgres"),
                    "Redis": processes_named("redis-server"),
                }
                one = clients_run(
                    [Client(base=base, secret=secret, buyer=pairs[0][0], seller=pairs[0][1])], orders_one, parts
                )
                parts["PostgreSQL"] = processes_named("postgres")  # backends opened since
                many = clients_run(
                    [Client(base=base, secret=secret, buyer=buyer, seller=seller) for buyer, seller in pairs],
                    orders_each,
                    parts,
                )
                scenarios[label] = (one, many)
            finally:
                server_stop(worker)
    finally:
        server_stop(server)
    return {"scenarios": scenarios}


def provider_latency_add() -> None:
    """Sandbox faults that only slow answers down: a submission waits for its ledger, every other
    Trustless Work request takes a round trip (the first matching fault applies)."""
    from sandbox.models import SandboxFault

    service = SandboxFault.Service.TRUSTLESS_WORK
    SandboxFault.objects.create(service=service, path_contains="send-transaction", latency_ms=SUBMISSION_LATENCY_MS)
    SandboxFault.objects.create(service=service, latency_ms=TW_LATENCY_MS)


def worker_wait(worker: subprocess.Popen, *, redis_url: str, log: Path) -> None:
    """Until every worker process answers a ping over the broker."""
    import celery

    control = celery.Celery(broker=redis_url).control
    deadline = time.monotonic() + 60
    while not control.ping(timeout=0.5):
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the Celery worker did not start:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def sandbox_serving(*, database_url: str, port: int):
    """The sandbox providers in a uvicorn process of their own, on `port`; yields its pid."""
    log = Path(tempfile.mkdtemp(prefix="bench-sandbox-")) / "sandbox.log"
    process = subprocess.Popen(
        [*UVICORN, "--host", HOST, "--port", str(port)],
        cwd=ROOT,
        env=sandbox_env(database_url=database_url, port=port),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        server_wait(process, port=port, log=log, name="sandbox")
        yield process.pid
    finally:
        server_stop(process)


def throughput_section(result: dict) -> list[str]:
    from django.conf import settings

    signers = max(settings.OFFERHUB_PLATFORM_SIGNERS, 1)  # 0: the platform account signs
    lines = [
        "## Order throughput: 1 client and 4",
        "",
        "Whole order lifecycles over the REST API in full mode (`tests/benchmarks/throughput.py`): gunicorn as "
        "docs/deployment.md runs it (DEBUG off), one Celery worker with "
        f"{WORKER_PROCESSES} processes, Redis as broker, the sandbox providers in a process of their own on the "
        "same database (rate limit lifted). Each client has its own buyer and seller and runs lifecycles one "
        "after another: create (one milestone), reserve, deploy the escrow, fund it, mark the milestone "
        "delivered, release it (5 contract calls: the escrow's platform signer signs the deploy and the release, the "
        "buyer's wallet the fund and the approval, the seller's the delivery mark); each provider-backed call "
        "waits for its outcome as the API does. Every process (clients, server, workers, sandbox, PostgreSQL, "
        "Redis) shares the machine's 2 cores; machine CPU is the share of both cores busy during the run. "
        "Twice: with the sandbox answering as fast as it can, then with the latency of real providers "
        f"injected in the sandbox (`SandboxFault`): every Trustless Work request {TW_LATENCY_MS} ms, a "
        f"submission {SUBMISSION_LATENCY_MS} ms (the time to a ledger; testnet's are about 5 s).",
        "",
        "| providers | clients | orders | time (s) | orders/s | speedup | errors | answered 202 | machine CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, (one, many) in result["scenarios"].items():
        for run in (one, many):
            speedup = run["per_second"] / one["per_second"] if one["per_second"] else 0.0
            lines.append(
                f"| {label} | {run['clients']} | {run['orders']} | {run['seconds']:.1f} | {run['per_second']:.2f} | "
                f"{speedup:.2f}x | {len(run['errors'])} | {run['pending']} | {run['cpu_busy'] * 100:.0f} % |"
            )
    for label, (one, many) in result["scenarios"].items():
        lines += [
            "",
            f"Step times, {label} (ms):",
            "",
            "| step | 1 client p50 | p99 | 4 clients p50 | p99 |",
            "|---|---:|---:|---:|---:|",
        ]
        for step in STEPS:
            a, b = one["steps"][step], many["steps"][step]
            lines.append(f"| {step} | {a['p50_ms']:.0f} | {a['p99_ms']:.0f} | {b['p50_ms']:.0f} | {b['p99_ms']:.0f} |")
    one, many = result["scenarios"][FAST]
    lines += [
        "",
        f"Where the CPU goes ({FAST}), in CPU milliseconds per completed order (user + system time of each "
        "part's processes over the run; PostgreSQL's also serve the sandbox's queries):",
        "",
        "| part | 1 client | 4 clients |",
        "|---|---:|---:|",
    ]
    for part in one["cpu_ms_per_order"]:
        lines.append(f"| {part} | {one['cpu_ms_per_order'][part]:.0f} | {many['cpu_ms_per_order'][part]:.0f} |")
    total = sum(one["cpu_ms_per_order"].values())
    lines += [
        f"| all | {total:.0f} | {sum(many['cpu_ms_per_order'].values()):.0f} |",
        "",
        f"With {total:.0f} CPU ms per order on 2 cores, this machine cannot exceed {2000 / total:.1f} orders/s "
        f"whatever the concurrency; with providers that answer at once one client already keeps "
        f"{one['cpu_busy'] * 100:.0f} % of it busy, so 4 clients can gain at most "
        f"{1 / max(one['cpu_busy'], 0.01):.1f}x there. With the providers' latency a lifecycle mostly waits, "
        "and what 4 clients gain shows what makes them take turns. The signer's lock is held for the submission "
        f"only (never for a Trustless Work build); the escrow's platform signer (one of {signers}, handed out in "
        "turn) signs two of each order's five calls, one at a time per signer: at the rates above each is busy "
        + ", ".join(
            f"{many['per_second'] * 2 * SUBMISSION_LATENCY_MS / 10 / signers:.0f} % of the time ({label}, 4 clients)"
            for label, (_, many) in result["scenarios"].items()
            if label != FAST
        )
        + " on average, which bounds the platform at about "
        f"{signers * 1000 / (2 * SUBMISSION_LATENCY_MS):.1f} orders/s whatever else scales; a drive whose signer "
        "is busy gives its worker process back and is queued again, and so does one that finds another drive of "
        "its escrow running (which runs the steps queued meanwhile): with 4 worker processes, a release queued "
        "while its delivery mark was still on its way to the network held a second worker idle before (2.7x).",
    ]
    return lines
