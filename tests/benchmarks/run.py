"""`make bench`: measured figures for docs/benchmarks.md (never timed assertions in tests).

Runs against its own PostgreSQL database (BENCH_DATABASE_URL, default offerhub_bench),
which it resets. Sandbox HTTP is served by uvicorn in a thread of this process. The event
stream phase starts a uvicorn worker of its own (port BENCH_PORT + 1) in full mode, with
Redis at BENCH_REDIS_URL (default db 15); the load phase starts gunicorn as production runs it
(tests/benchmarks/load.py) on a free port. BENCH_ONLY=sse or BENCH_ONLY=load runs that phase
alone and splices its section into docs/benchmarks.md, leaving the other sections as they are;
BENCH_ONLY=waits (tests/benchmarks/waits.py: API calls waiting for a provider step under uvicorn,
in full mode with Redis at BENCH_REDIS_URL) runs only alone, the same way.
"""

import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH_DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/offerhub_bench")
PORT = int(os.environ.get("BENCH_PORT", "8765"))
BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
BENCH_ONLY = os.environ.get("BENCH_ONLY", "")
os.environ.update(
    {
        "DJANGO_SETTINGS_MODULE": "offerhub.settings",
        "ENV_FILE": "",
        "DATABASE_URL": BENCH_DATABASE_URL,
        "PORT": str(PORT),
        "LOG_LEVEL": "WARNING",
    }
)
os.environ.pop("REDIS_URL", None)  # in-process tasks: the watcher alone is measured (the SSE phase sets its own)
# The throughput phase's sandbox runs in a process of its own: this process reaches it there.
SANDBOX_PORT = PORT + 2
if BENCH_ONLY == "throughput":
    os.environ.update(
        {
            "TRUSTLESS_WORK_API_URL": f"http://127.0.0.1:{SANDBOX_PORT}/providers/trustless-work",
            "STELLAR_HORIZON_URL": f"http://127.0.0.1:{SANDBOX_PORT}/providers/horizon",
        }
    )
if BENCH_ONLY == "waits":  # full mode: the change notifications over Redis, tasks queued for a worker
    os.environ["REDIS_URL"] = BENCH_REDIS_URL
sys.path.insert(0, str(ROOT))


# The event-dispatch figures of bench_order_lifecycle, per order, measured on the commit before
# per-transaction dispatch (one task per event); the "after" row is measured on every run.
BEFORE = {"commit": "bf7bb2e", "events": 17, "tasks": 17, "all_tasks": 22, "statements": 328}


def reset_database() -> None:
    import psycopg

    name = BENCH_DATABASE_URL.rsplit("/", 1)[1]
    admin_url = BENCH_DATABASE_URL.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def timed(fn, repeat: int) -> dict:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {"median_ms": statistics.median(samples), "p95_ms": samples[int(len(samples) * 0.95) - 1]}


def bulk_postings(account_pairs, count: int) -> None:
    """Load `count` postings (count/2 balanced entries) with COPY. The per-row balance
    trigger is paused for the load only; balance rows are set to the sums afterwards."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM payments_journalentry")
        first_entry = cursor.fetchone()[0] + 1
        raw = cursor.connection
        entries = count // 2
        with raw.cursor().copy(
            "COPY payments_journalentry (id, idempotency_key, kind, description, correlation_id, metadata, created_at)"
            " FROM STDIN"
        ) as copy:
            now = datetime.now(UTC)
            for n in range(entries):
                copy.write_row((first_entry + n, f"bench:{first_entry + n}", "bench", "", "", "{}", now))
        with raw.cursor().copy("COPY payments_posting (entry_id, account_id, amount, created_at) FROM STDIN") as copy:
            for n in range(entries):
                source, destination = account_pairs[n % len(account_pairs)]
                copy.write_row((first_entry + n, source, -100, now))
                copy.write_row((first_entry + n, destination, 100, now))
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('payments_journalentry', 'id'), %s)", [first_entry + entries]
        )
        cursor.execute(
            "UPDATE payments_ledgeraccount a SET balance = s.total FROM "
            "(SELECT account_id, SUM(amount) AS total FROM payments_posting GROUP BY account_id) s "
            "WHERE a.id = s.account_id"
        )
        cursor.execute("SET session_replication_role = DEFAULT")
        cursor.execute("ANALYZE payments_posting")


def bench_balance_reads() -> list[tuple]:
    from django.db import connection
    from django.db.models import Sum

    from marketplace.models import User
    from payments.balances import balance_snapshot
    from payments.ledger import ledger_account, user_accounts
    from payments.models import LedgerAccount

    user = User.objects.create_user("bench@example.test", None, display_name="Bench")
    available, _ = user_accounts(user)
    external = ledger_account(kind=LedgerAccount.Kind.EXTERNAL_STELLAR)
    rows = []
    loaded = 0
    for target in (1_000, 1_000_000):
        bulk_postings([(external.pk, available.pk)], target - loaded)
        loaded = target
        snapshot = timed(lambda: balance_snapshot(user=user), 2000)
        summed = timed(lambda: available.postings.aggregate(total=Sum("amount")), 20)
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM payments_posting WHERE account_id = %s", [available.pk])
            on_account = cursor.fetchone()[0]
        rows.append((f"{target:,}", f"{on_account:,}", snapshot["median_ms"], snapshot["p95_ms"], summed["median_ms"]))
    return rows


def serve_sandbox() -> None:
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config("offerhub.asgi:application", host="127.0.0.1", port=PORT, log_level="warning", lifespan="off")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)


def bench_deposit_watcher(payments_count: int = 10_000, wallets_count: int = 100) -> dict:
    from django.conf import settings
    from django.core.signals import request_started

    from marketplace.models import User
    from payments.deposits import deposits_sync
    from payments.ledger import user_accounts
    from payments.models import ChainCursor, JournalEntry, Wallet
    from payments.wallets import DEPOSIT_CURSOR, platform_bootstrap, wallet_ensure
    from sandbox.chain import chain_mint_usdc

    platform_bootstrap()
    wallets = []
    for n in range(wallets_count):
        user = User.objects.create_user(f"depositor{n}@example.test", None, display_name=f"D{n}")
        wallets.append(wallet_ensure(user=user))
    assert all(Wallet.objects.get(pk=w.pk).status == Wallet.Status.ACTIVE for w in wallets)
    ChainCursor.objects.filter(name=DEPOSIT_CURSOR).delete()
    platform_bootstrap()  # cursor at the current end of the feed
    for n in range(payments_count):
        chain_mint_usdc(account_id=wallets[n % wallets_count].public_key, amount=10_000_000 + n)
    requests_seen = []

    def count(sender, **kwargs):
        path = (kwargs.get("scope") or {}).get("path") or (kwargs.get("environ") or {}).get("PATH_INFO", "")
        if path.startswith("/sandbox/horizon/payments"):
            requests_seen.append(1)

    request_started.connect(count)
    started = time.perf_counter()
    credited = deposits_sync(max_pages=10_000)
    elapsed = time.perf_counter() - started
    request_started.disconnect(count)
    again_started = time.perf_counter()
    again = deposits_sync(max_pages=10_000)
    again_elapsed = time.perf_counter() - again_started
    total = sum(user_accounts(w.user)[0].balance for w in wallets)
    assert credited == payments_count and again == 0
    assert JournalEntry.objects.filter(kind="deposit").count() == payments_count
    assert total == sum(10_000_000 + n for n in range(payments_count))
    return {
        "payments": payments_count,
        "wallets": wallets_count,
        "seconds": elapsed,
        "per_second": payments_count / elapsed,
        "horizon_requests": len(requests_seen),
        "rerun_seconds": again_elapsed,
        "horizon": settings.STELLAR_HORIZON_URL,
    }


class Counter:
    def __init__(self, stop):
        self.stop = stop


def counting_tasks_and_statements() -> tuple[Counter, Counter]:
    """Celery tasks run (in process, by name) and SQL statements sent on this thread's
    connection, from now until each counter's stop() (which returns the count)."""
    from celery.signals import task_prerun
    from django.db import connection

    by_name: dict[str, int] = {}
    statements = [0]

    def on_task(sender=None, **kwargs):
        by_name[sender.name] = by_name.get(sender.name, 0) + 1

    def on_statement(execute, sql, params, many, context):
        statements[0] += 1
        return execute(sql, params, many, context)

    task_prerun.connect(on_task)
    wrapper = connection.execute_wrapper(on_statement)
    wrapper.__enter__()

    def stop_tasks():
        task_prerun.disconnect(on_task)
        return by_name

    def stop_statements():
        wrapper.__exit__(None, None, None)
        return statements[0]

    return Counter(stop_tasks), Counter(stop_statements)


def bench_order_lifecycle(orders_count: int = 40) -> dict:
    """create → reserve → escrow deployed → funded → delivered → released → closed, each order over
    HTTP against the sandbox Trustless Work and Horizon (tasks in-process)."""
    from decimal import Decimal

    from marketplace.models import Order, User
    from marketplace.orders import (
        SYSTEM,
        order_create,
        order_escrow_create,
        order_escrow_fund,
        order_milestone_complete,
        order_release,
        order_reserve,
    )
    from offerhub.models import Event
    from payments.balances import sandbox_mint
    from payments.deposits import deposits_sync
    from payments.wallets import wallet_ensure

    buyer = User.objects.create_user("bench-buyer@example.test", None, display_name="Bench buyer")
    seller = User.objects.create_user("bench-seller@example.test", None, display_name="Bench seller")
    wallet_ensure(user=seller)
    sandbox_mint(wallet_ensure(user=buyer), (orders_count + 1) * 10 * 10_000_000)
    deposits_sync(max_pages=100)
    steps = {"create + reserve": [], "escrow deployed": [], "funded": [], "delivered": [], "released": []}
    # One order first, not counted: it creates the ledger accounts every later order reuses (the
    # seller's, the platform fee's, the escrow fees'), a once-per-member cost, not a lifecycle's.
    warm_up, _ = order_create(buyer=buyer, seller=seller, amount=10 * 10_000_000, title="Warm-up", actor=SYSTEM)
    order_reserve(order=warm_up, actor=SYSTEM)
    order_escrow_create(order=warm_up, actor=SYSTEM)
    order_escrow_fund(order=warm_up, actor=SYSTEM)
    order_milestone_complete(order=warm_up, ref=None, actor=SYSTEM)
    order_release(order=warm_up, actor=SYSTEM)
    tasks, statements = counting_tasks_and_statements()
    events_before = Event.objects.count()
    started = time.perf_counter()
    placed = []
    for n in range(orders_count):
        mark = time.perf_counter()
        order, _ = order_create(buyer=buyer, seller=seller, amount=10 * 10_000_000, title=f"Bench {n}", actor=SYSTEM)
        order_reserve(order=order, actor=SYSTEM)
        steps["create + reserve"].append(time.perf_counter() - mark)
        for name, step in (
            ("escrow deployed", order_escrow_create),
            ("funded", order_escrow_fund),
            ("delivered", lambda order, actor: order_milestone_complete(order=order, ref=None, actor=actor)),
            ("released", order_release),
        ):
            mark = time.perf_counter()
            step(order=order, actor=SYSTEM)
            steps[name].append(time.perf_counter() - mark)
        placed.append(order.pk)
    elapsed = time.perf_counter() - started
    counted = tasks.stop(), statements.stop()
    # Checked once the counting stopped: the bench's own read is not the platform's statement.
    statuses = set(Order.objects.filter(pk__in=placed).values_list("status", flat=True))
    assert statuses == {Order.Status.CLOSED}, statuses
    return {
        "events": (Event.objects.count() - events_before) / orders_count,
        "tasks": counted[0].get("offerhub.tasks.events_dispatch", 0) / orders_count,
        "all_tasks": sum(counted[0].values()) / orders_count,
        "statements": counted[1] / orders_count,
        "orders": orders_count,
        "seconds": elapsed,
        "per_second": orders_count / elapsed,
        "steps": {name: statistics.median(samples) * 1000 for name, samples in steps.items()},
        "amount": Decimal(10),
    }


def bench_pages(repeat: int = 30) -> list[tuple[str, dict]]:
    """Server-side latency of the busiest pages (Django test client, logged in, PostgreSQL)."""
    from django.test import Client

    from marketplace.models import Listing, Order, User

    buyer = User.objects.get(email="bench-buyer@example.test")
    seller = User.objects.get(email="bench-seller@example.test")
    from tests.factories import CategoryFactory, ListingFactory

    category = CategoryFactory()
    for n in range(200):
        ListingFactory(seller=seller, category=category, title=f"Bench listing {n} logo design", price_cents=1_000 + n)
    listing = Listing.objects.first()
    order = Order.objects.filter(buyer=buyer).first()
    client = Client()
    client.force_login(buyer)
    pages = [
        ("listings (200 active)", "/listings/"),
        ("search “logo”", "/listings/?q=logo"),
        ("listing page", f"/listings/{listing.public_id}/"),
        ("my purchases (40 orders)", "/orders/purchases/"),
        ("order page", f"/orders/{order.public_id}/"),
    ]
    rows = []
    for label, path in pages:
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        rows.append((label, timed(lambda path=path: client.get(path), repeat)))
    return rows


def pages_section(pages: list[tuple[str, dict]]) -> list[str]:
    """The "Page latency" section."""
    return [
        "## Page latency",
        "",
        "Server-side time of a GET through the Django test client (no network), logged in as a buyer with 40 "
        "orders, 200 listings in the catalogue. Query counts are bounded by the tests "
        "(`django_assert_max_num_queries`), not measured here. Browsing and search are served from the "
        "catalogue page cache after their first load (docs/marketplace.md), which the medians show.",
        "",
        "| page | median (ms) | p95 (ms) |",
        "|---|---:|---:|",
        *(f"| {label} | {t['median_ms']:.1f} | {t['p95_ms']:.1f} |" for label, t in pages),
    ]


def bench_sse() -> dict:
    from tests.benchmarks.sse import bench_event_stream

    return bench_event_stream(port=PORT + 1, database_url=BENCH_DATABASE_URL, redis_url=BENCH_REDIS_URL)


def lifecycle_sections(lifecycle: dict) -> list[str]:
    """The "Order lifecycle" and "Event dispatch per order lifecycle" sections."""
    return [
        "## Order lifecycle",
        "",
        f"{lifecycle['orders']} orders of ${lifecycle['amount']} one after another, each: create and hold the money, "
        "deploy its escrow, fund it, mark it delivered, release it to the seller (approve + release) and close. "
        "Every contract call goes over HTTP to the sandbox Trustless Work (build, verify, sign, store the hash, "
        "send), with the ledger entry posted when the chain confirms.",
        "",
        "| orders | time (s) | orders/s | create + reserve (ms) | deploy (ms) | fund (ms) | deliver (ms) "
        "| release (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {lifecycle['orders']} | {lifecycle['seconds']:.1f} | {lifecycle['per_second']:.2f} | "
        + " | ".join(f"{value:.0f}" for value in lifecycle["steps"].values())
        + " |",
        "",
        "Step times are medians. A release is two contract calls (the buyer's approval, then the release). "
        "The sandbox's rate limit is lifted for this run: on the real Trustless Work, 50 requests a minute per "
        "API key bound the platform to about 5 such lifecycles a minute (each costs about 10 requests: a build "
        "and a submission per call), whatever our own throughput; the step runner waits out 429s without ever "
        "resubmitting blindly.",
        "",
        "## Event dispatch per order lifecycle",
        "",
        f"Per order of the lifecycle above (mean over {lifecycle['orders']}): events written, the event-dispatch "
        "Celery tasks and all Celery tasks run, and SQL statements sent by the platform (its own connection; the "
        "sandbox providers' are not counted). Tasks run in process, so their statements are included. Before: "
        f"one dispatch task per event (measured the same way on commit {BEFORE['commit']}); after: one per "
        "transaction that wrote events outside a task (the service calls, as requests make them), each "
        "positioning the events and running every subscriber's cursor; what a task commits (the escrow steps' "
        "drives) is delivered by that task once it lets go of its locks (`docs/architecture.md`, Event delivery).",
        "",
        "| | events | dispatch tasks | all tasks | SQL statements |",
        "|---|---:|---:|---:|---:|",
        f"| before | {BEFORE['events']:.0f} | {BEFORE['tasks']:.0f} | {BEFORE['all_tasks']:.0f} | "
        f"{BEFORE['statements']:.0f} |",
        f"| after | {lifecycle['events']:.0f} | {lifecycle['tasks']:.0f} | {lifecycle['all_tasks']:.0f} | "
        f"{lifecycle['statements']:.1f} |",
        "",
        "The extra event is `order.delivered` (the buyer's e-mail hangs on it). Along the way: the first "
        "at-least-once delivery cost 538 statements (a claim transaction per subscriber, a savepoint per call); "
        "delivery in passes brought it to 359, then (issue 13) the ledger writes an entry, its postings and the "
        "balances in one statement on rows locked once, a service's audit rows and events go in one INSERT each "
        "at its end, event delivery reuses the rows the sequencer returns, a step is queued with one INSERT … ON "
        "CONFLICT, one drive runs all the calls a transaction queued for an escrow, and e-mails go in one batch "
        "per transaction (191). Then: a transaction's audit rows, events and its last row updates in one "
        "statement (a data-modifying WITH), the step's SUBMITTED write fencing both leases in one UPDATE, a "
        "drive claiming its steps in the statement that takes the escrow's lease, the event sequencer's lock "
        "and positions in one call of a PL/pgSQL function, settles that neither lock the order nor read "
        "milestones an order has not got. `tests/benchmarks/lifecycle_profile.py` groups what is left by the "
        "line that sends it: event sequencing and delivery (about 24), the leases (about 23: claims, fences, "
        "releases), the escrow services (22), the outbox (14), the ledger (11), orders (9), the platform's "
        "and signers' keys (7). Not counted: a first order, which creates the ledger accounts later orders reuse "
        "(+0.4 a lifecycle over 40 orders), and the bench's own check that every order closed. "
        "Tasks: the drives (4: deploy, fund, the delivery mark, approve + release in one) and 2 event "
        "dispatches for what requests commit.",
    ]


def section_splice(text: str, section: list[str]) -> str:
    """`text` with the section of the same `## ` title replaced by `section` (or appended)."""
    lines, title = text.rstrip("\n").split("\n"), section[0]
    if title in lines:
        start = lines.index(title)
        end = next((n for n in range(start + 1, len(lines)) if lines[n].startswith("## ")), len(lines))
        lines[start:end] = section + ([""] if end < len(lines) else [])
    else:
        lines += ["", *section]
    return "\n".join(lines) + "\n"


def bench_load() -> dict:
    from tests.benchmarks.load import bench_load

    return bench_load(database_url=BENCH_DATABASE_URL, redis_url=BENCH_REDIS_URL)


def bench_throughput() -> dict:
    from tests.benchmarks.throughput import bench_throughput, sandbox_serving

    with sandbox_serving(database_url=BENCH_DATABASE_URL, port=SANDBOX_PORT) as sandbox_pid:
        return bench_throughput(database_url=BENCH_DATABASE_URL, redis_url=BENCH_REDIS_URL, sandbox_pid=sandbox_pid)


def load_print(result: dict) -> None:
    print(f"{'target':<40} {'req/s':>8} {'vs bare':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for row in result["rows"]:
        print(
            f"{row['label']:<40} {row['per_second']:>8.0f} {row['ratio'] * 100:>7.0f}% {row['p50_ms']:>8.1f} "
            f"{row['p99_ms']:>8.1f} {row['errors']:>7}"
        )


def main() -> None:
    if BENCH_ONLY not in ("", "sse", "load", "waits", "throughput", "lifecycle"):
        raise SystemExit(
            f"BENCH_ONLY={BENCH_ONLY!r}: only 'sse' (the event stream phase), 'load' (HTTP reads under load), "
            "'waits' (API calls waiting for a provider step), 'throughput' (order lifecycles at 1 and 4 clients) or "
            "'lifecycle' (one client's lifecycles in process: time, statements, tasks) can run alone"
        )
    reset_database()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.conf import settings

    from tests.benchmarks.load import load_section
    from tests.benchmarks.sse import event_stream_section
    from tests.benchmarks.throughput import throughput_section

    output = ROOT / "docs" / "benchmarks.md"
    if BENCH_ONLY == "waits":
        import redis

        from tests.benchmarks.waits import bench_waits, waits_section

        redis.Redis.from_url(BENCH_REDIS_URL).flushdb()  # the steps' drives queued by earlier runs
        settings.SANDBOX_TRUSTLESS_WORK_RATE_LIMIT = 10**9
        serve_sandbox()
        print("waiting API calls…", flush=True)
        result = bench_waits(port=PORT)
        print(result)
        section = waits_section(result)
        output.write_text(section_splice(output.read_text(), section))
        print("\n".join(section))
        return
    if BENCH_ONLY == "load":
        print("HTTP reads under load…", flush=True)
        result = bench_load()
        load_print(result)
        section = load_section(result)
        output.write_text(section_splice(output.read_text(), section))
        print("\n".join(section))
        return
    if BENCH_ONLY == "lifecycle":
        settings.SANDBOX_TRUSTLESS_WORK_RATE_LIMIT = 10**9
        settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
        serve_sandbox()
        from payments.wallets import platform_bootstrap

        platform_bootstrap()  # the full run's deposit watcher phase does it first
        print("order lifecycle…", flush=True)
        sections = lifecycle_sections(bench_order_lifecycle())
        print("pages…", flush=True)  # on the lifecycle's buyer and orders
        pages = pages_section(bench_pages())
        split = sections.index("## Event dispatch per order lifecycle")
        text = output.read_text()
        for section in (sections[: split - 1], sections[split:], pages):
            text = section_splice(text, section)
        output.write_text(text)
        print("\n".join([*sections, "", *pages]))
        return
    if BENCH_ONLY == "throughput":
        print("order throughput, 1 client and 4…", flush=True)
        result = bench_throughput()
        for one, many in result["scenarios"].values():
            for error in one["errors"] + many["errors"]:
                print("error:", error)
        section = throughput_section(result)
        output.write_text(section_splice(output.read_text(), section))
        print("\n".join(section))
        return
    if BENCH_ONLY == "sse":
        print("event stream…", flush=True)
        result = bench_sse()
        print({name: value for name, value in result.items() if name != "faulty"})
        section = event_stream_section(result)
        output.write_text(section_splice(output.read_text(), section))
        print("\n".join(section))
        return

    # Our own costs: the sandbox's 50-requests-a-minute limit (Trustless Work's) is lifted
    # here; the lifecycle section says what it means in production.
    settings.SANDBOX_TRUSTLESS_WORK_RATE_LIMIT = 10**9
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    serve_sandbox()
    print("balance reads…", flush=True)
    balance_rows = bench_balance_reads()
    print("deposit watcher…", flush=True)
    watcher = bench_deposit_watcher()
    print("order lifecycle…", flush=True)
    lifecycle = bench_order_lifecycle()
    print("pages…", flush=True)
    pages = bench_pages()
    print("event stream…", flush=True)
    stream = bench_sse()
    print({name: value for name, value in stream.items() if name != "faulty"}, flush=True)
    print("HTTP reads under load…", flush=True)
    load = bench_load()
    load_print(load)
    lines = [
        "# Benchmarks",
        "",
        "Produced by `make bench` (`tests/benchmarks/run.py`); figures from the run noted below. "
        "Machine: 2 cores, 24 GiB, PostgreSQL 15 on localhost; Python "
        f"{sys.version.split()[0]}. Run on {datetime.now(UTC):%Y-%m-%d}. The event stream phase also needs Redis "
        "(`BENCH_REDIS_URL`, default db 15), as do the load, waits and throughput phases (full mode); "
        "`BENCH_ONLY=<phase> make bench` (sse, load, waits, throughput, lifecycle: with the page latency) runs "
        "that phase alone and updates its sections only.",
        "",
        "## Balance reads vs. history length",
        "",
        "A balance is one row per account, updated in the same transaction as each posting, so its cost does "
        "not depend on the history. For contrast, the last column sums the postings instead.",
        "",
        "| postings in the ledger | on the account | balance read, median (ms) | p95 (ms) "
        "| SUM over postings, median (ms) |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {a} | {b} | {c:.3f} | {d:.3f} | {e:.1f} |" for a, b, c, d, e in balance_rows]
    lines += [
        "",
        "## Deposit watcher",
        "",
        f"{watcher['payments']:,} USDC payments to {watcher['wallets']} wallets on the sandbox chain, read over "
        "HTTP from the Horizon payments feed and credited (one journal entry, audit row and event each). "
        "Embedded mode: each event is also dispatched in-process after its page commits, which the time includes.",
        "",
        "| payments | wallets | Horizon requests | time (s) | payments/s | rerun, nothing new (s) |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {watcher['payments']:,} | {watcher['wallets']} | {watcher['horizon_requests']} | "
        f"{watcher['seconds']:.1f} | {watcher['per_second']:.0f} | {watcher['rerun_seconds']:.2f} |",
        "",
        "Horizon requests are pages of 200 payments: they grow with the number of new payments, not with the "
        "number of wallets (recipients are matched with one query per page).",
        "",
    ]
    lines += lifecycle_sections(lifecycle)
    lines += ["", *pages_section(pages), "", *event_stream_section(stream), "", *load_section(load), ""]
    output.write_text("\n".join(lines))
    print(output.read_text())
    # These two run in processes of their own (full mode, Redis; other providers and settings),
    # each splicing its own section.
    for phase, title in (("waits", "API calls waiting for a provider step"), ("throughput", "order throughput")):
        print(f"{title}…", flush=True)
        subprocess.run([sys.executable, __file__], env={**os.environ, "BENCH_ONLY": phase}, check=True)


if __name__ == "__main__":
    main()
