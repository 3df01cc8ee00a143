"""`BENCH_ONLY=waits make bench`: provider-backed API calls waiting for their step under uvicorn.

N calls (POST /orders/{id}/escrow) wait at once on the ASGI application (offerhub.asgi, uvicorn
in a thread of this process, as `make run` serves it), in full mode: PostgreSQL, and Redis
(BENCH_REDIS_URL) for the change notifications and as the Celery broker. No worker consumes the
broker, so every deploy step stays open and every call waits; then this process settles the
steps one by one (`step_settle`, as the worker does once the chain confirmed), and each call is
answered when the notification of its order wakes it. The clients are one asyncio loop on one
thread (httpx), so the process's thread count shows the server's own threads.

Measured: the process's threads (/proc/self/status) before the calls and while all N wait; the
time from a settle's return (its commit and its publish are done) to the client's answer.
"""

import asyncio
import statistics
import threading
import time
from pathlib import Path

WAITS_TITLE = "## Waiting API calls (BENCH_ONLY=waits)"


def _threads() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise RuntimeError("no Threads line in /proc/self/status")


def bench_waits(*, port: int, calls: int = 50) -> dict:
    import httpx
    from django.conf import settings

    from escrow.models import EscrowStep
    from escrow.services import step_settle
    from marketplace.models import Order, User
    from marketplace.orders import SYSTEM, order_create, order_reserve
    from offerhub.celery import app as celery_app
    from offerhub.models import AuditLog
    from offerhub.services import api_key_create
    from offerhub.waits import waiters_count
    from payments.balances import sandbox_mint
    from payments.deposits import deposits_sync
    from payments.wallets import platform_bootstrap, wallet_ensure

    assert settings.REDIS_URL, "the waits phase runs in full mode"
    settings.OFFERHUB_SYNC_WAIT_SECONDS = 300  # every call is answered by its notification, not its deadline
    celery_app.conf.task_always_eager = True  # the set-up's tasks (wallet activations) run here
    platform_bootstrap()
    buyer = User.objects.create_user("wait-buyer@example.test", None, display_name="Wait buyer")
    seller = User.objects.create_user("wait-seller@example.test", None, display_name="Wait seller")
    wallet_ensure(user=seller)
    sandbox_mint(wallet_ensure(user=buyer), calls * 2 * 10_000_000)
    deposits_sync(max_pages=100)
    orders = []
    for n in range(calls):
        order, _ = order_create(buyer=buyer, seller=seller, amount=10_000_000, title=f"Wait {n}", actor=SYSTEM)
        order_reserve(order=order, actor=SYSTEM)
        orders.append(order.public_id)
    _, secret = api_key_create(
        name="waits bench",
        scopes=["read", "write"],
        marketplace_id="",
        actor_type=AuditLog.ActorType.SYSTEM,
        actor_id="bench",
    )

    # From now on tasks go to the broker, where no worker takes them: the deploy steps stay open.
    celery_app.conf.task_always_eager = False
    answered: dict[str, tuple[float, int]] = {}
    loop = asyncio.new_event_loop()
    client_thread = threading.Thread(target=loop.run_forever, name="bench-clients", daemon=True)
    client_thread.start()

    async def call(client, order_id: str) -> None:
        response = await client.post(
            f"http://127.0.0.1:{port}/api/v1/orders/{order_id}/escrow",
            json={},
            headers={"Authorization": f"Bearer {secret}", "Idempotency-Key": f"wait-{order_id}"},
        )
        answered[order_id] = (time.perf_counter(), response.status_code)

    async def all_calls() -> None:
        limits = httpx.Limits(max_connections=calls + 10, max_keepalive_connections=calls + 10)
        async with httpx.AsyncClient(timeout=600, limits=limits) as client:
            await asyncio.gather(*(call(client, order_id) for order_id in orders))

    time.sleep(1)  # the server idle: the threads that served the set-up's sandbox calls are gone
    threads_before = _threads()
    started = time.perf_counter()
    calls_done = asyncio.run_coroutine_threadsafe(all_calls(), loop)
    while waiters_count() < calls:
        if calls_done.done():
            calls_done.result()
            raise RuntimeError(f"the calls ended before all waited: {answered}")
        time.sleep(0.01)
    all_waiting = time.perf_counter() - started
    time.sleep(1)  # all waiting for a while: what the server holds now, it holds for the whole wait
    threads_waiting = _threads()
    settled: dict[str, tuple[float, float]] = {}
    for order_id in orders:
        step = EscrowStep.objects.get(escrow__engagement_id=order_id, action=EscrowStep.Action.DEPLOY)
        called = time.perf_counter()
        step_settle(step=step, contract_id=f"C{order_id[-20:].upper():A<55}")
        settled[order_id] = (called, time.perf_counter())
        time.sleep(0.02)  # one confirmation after another, as a worker's come
    calls_done.result(timeout=120)
    loop.call_soon_threadsafe(loop.stop)
    client_thread.join(5)
    statuses = sorted({status for _, status in answered.values()})
    assert statuses == [201], statuses
    assert Order.objects.filter(public_id__in=orders, status=Order.Status.ESCROW_FUNDING).count() == calls
    latencies = sorted((answered[o][0] - settled[o][1]) * 1000 for o in orders)
    settles = sorted((settled[o][1] - settled[o][0]) * 1000 for o in orders)
    return {
        "calls": calls,
        "threads_before": threads_before,
        "threads_waiting": threads_waiting,
        "db_threads": settings.OFFERHUB_SYNC_WAIT_DB_THREADS,
        "all_waiting_s": all_waiting,
        "wake_median_ms": statistics.median(latencies),
        "wake_p95_ms": latencies[int(len(latencies) * 0.95) - 1],
        "wake_max_ms": latencies[-1],
        "settle_median_ms": statistics.median(settles),
    }


def waits_section(result: dict) -> list[str]:
    calls = result["calls"]
    return [
        WAITS_TITLE,
        "",
        f"{calls} `POST /orders/{{id}}/escrow` calls wait at once for their deploy step on the ASGI application "
        "(uvicorn, one worker, in a thread of the bench process; PostgreSQL, Redis for the change notifications). "
        "No worker consumes the broker, so every call waits until the bench settles its step (`step_settle`, as "
        "the worker does once the chain confirmed), one every 20 ms; each call is woken by the Redis message "
        "`offerhub:orders:changed` sent after that commit (offerhub/waits.py), re-reads its order and answers "
        "201. Threads are the process's (/proc/self/status), the clients being one asyncio loop on one thread. "
        "The machine is shared with other work: the figures are indicative.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| threads before the calls | {result['threads_before']} |",
        f"| threads while {calls} calls wait | {result['threads_waiting']} |",
        f"| threads added while they wait | {result['threads_waiting'] - result['threads_before']} |",
        f"| time until all {calls} calls wait (s) | {result['all_waiting_s']:.2f} |",
        f"| settle (commit + publish), median (ms) | {result['settle_median_ms']:.1f} |",
        f"| settle returned → answer received, median (ms) | {result['wake_median_ms']:.1f} |",
        f"| p95 (ms) | {result['wake_p95_ms']:.1f} |",
        f"| max (ms) | {result['wake_max_ms']:.1f} |",
        "",
        "What the server holds while the calls wait is one listener thread (the Redis subscription, shared by "
        f"every waiter of the process) and up to {result['db_threads']} database threads "
        "(`OFFERHUB_SYNC_WAIT_DB_THREADS`) for the waiters' re-reads and final answers; before this change each "
        f"waiting call held its request's thread for up to `OFFERHUB_SYNC_WAIT_SECONDS` ({calls} threads here) and "
        "read its order every 200 ms. Under gunicorn (WSGI) a waiting call still holds its worker thread, blocked "
        "on the notification instead of polling.",
    ]
