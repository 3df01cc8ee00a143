"""Where a load-phase request's time goes: the same GET in process, in full mode, under cProfile.

Run after `BENCH_ONLY=load make bench` (it reuses the bench database's data), or with
BENCH_PROFILE_SEED=1, which first recreates the bench database with the load phase's data alone:

    BENCH_DATABASE_URL=... BENCH_REDIS_URL=... .venv/bin/python -m tests.benchmarks.load_profile [target ...]

Targets: balance, orders, listings, home, visitor (the listings page, not logged in), health,
bare (default: all). For each: SQL statements
and Redis round trips per request, the in-process time per request, and cProfile's top functions
(not part of docs/benchmarks.md: a tool for the next optimisation).
"""

import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT_ENV_FLAG = "OFFERHUB_LOAD_PROFILE_CHILD"


def threaded_cpu_ms(client, path: str, threads: int, repeat: int) -> float:
    """This process's CPU per request with `threads` threads each making `repeat` requests at
    once (a client each, with `client`'s cookies and headers)."""
    import threading

    from django.db import connection
    from django.test import Client

    def run():
        own = Client(**client.defaults)
        own.cookies = client.cookies
        for _ in range(repeat):
            own.get(path)
        connection.close()

    workers = [threading.Thread(target=run) for _ in range(threads)]
    started = time.process_time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return (time.process_time() - started) / (threads * repeat) * 1000


def child(names: list[str], repeat: int) -> None:
    import django

    django.setup()
    import redis.connection
    from django.db import connection
    from django.middleware.csrf import CSRF_ALLOWED_CHARS, CSRF_SECRET_LENGTH
    from django.test import Client
    from django.utils.crypto import get_random_string

    from marketplace.models import User
    from offerhub.services import api_key_create

    buyer = User.objects.get(email="load-buyer@example.test")
    _, secret = api_key_create(name="bench profile", scopes=["read"], actor_type="SYSTEM", actor_id="bench")
    api = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {secret}", HTTP_X_FORWARDED_PROTO="https")
    page = Client(HTTP_HOST="127.0.0.1", HTTP_X_FORWARDED_PROTO="https")
    page.force_login(buyer)
    anonymous = Client(HTTP_HOST="127.0.0.1", HTTP_X_FORWARDED_PROTO="https")
    visitor = Client(HTTP_HOST="127.0.0.1", HTTP_X_FORWARDED_PROTO="https")  # the CSRF cookie alone
    visitor.cookies["csrftoken"] = get_random_string(CSRF_SECRET_LENGTH, CSRF_ALLOWED_CHARS)
    targets = {
        "bare": (anonymous, "/bench/bare"),
        "health": (anonymous, "/api/v1/health"),
        "balance": (api, f"/api/v1/users/{buyer.public_id}/balance"),
        "orders": (api, f"/api/v1/orders?buyer_id={buyer.public_id}&limit=20"),
        "listings": (page, "/listings/"),
        "home": (page, "/"),
        "visitor": (visitor, "/listings/"),
    }
    statements: list[str] = []
    round_trips = [0]

    def on_statement(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    send = redis.connection.AbstractConnection.send_packed_command

    def counting_send(self, command, check_health=True):
        round_trips[0] += 1
        return send(self, command, check_health)

    redis.connection.AbstractConnection.send_packed_command = counting_send
    connection.execute_wrappers.append(on_statement)
    for name in names:
        client, path = targets[name]
        for _ in range(20):  # warm: templates, pools, the API key's last_used_at write
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code, response.content[:300])
        statements.clear()
        round_trips[0] = 0
        client.get(path)
        per_request_sql = list(statements)
        per_request_redis = round_trips[0]
        started, started_cpu = time.perf_counter(), time.process_time()
        for _ in range(repeat):
            client.get(path)
        plain_ms = (time.perf_counter() - started) / repeat * 1000
        # This process's CPU (the test client's share included): steadier than the wall clock
        # on a shared machine, and without PostgreSQL's and Redis's time.
        cpu_ms = (time.process_time() - started_cpu) / repeat * 1000
        if os.environ.get("BENCH_PROFILE_FIGURES_ONLY"):  # the figures line alone (before/after runs)
            print(f"\n===== {name} {path}")
            print(f"in process: {plain_ms:.2f} ms per request ({cpu_ms:.2f} ms CPU); ", end="")
            print(f"SQL statements: {len(per_request_sql)}; Redis round trips: {per_request_redis}")
            for threads in (1, 8):  # the same requests from threads at once, as gunicorn's serve them
                print(f"  {threads} thread(s): {threaded_cpu_ms(client, path, threads, repeat):.2f} ms CPU per request")
            continue
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(repeat):
            client.get(path)
        profile.disable()
        if os.environ.get("BENCH_PROFILE_DUMP"):  # a directory: <target>.prof for pstats / snakeviz
            profile.dump_stats(Path(os.environ["BENCH_PROFILE_DUMP"]) / f"{name}.prof")
        print(f"\n===== {name} {path}")
        print(f"in process: {plain_ms:.2f} ms per request ({cpu_ms:.2f} ms CPU); ", end="")
        print(f"SQL statements: {len(per_request_sql)}; ", end="")
        print(f"Redis round trips: {per_request_redis}")
        for sql in per_request_sql:
            print(f"   SQL: {sql[:160]}")
        for order in ("tottime", "cumulative"):
            out = io.StringIO()
            stats = pstats.Stats(profile, stream=out)
            stats.sort_stats(order).print_stats(28)
            print(f"--- top by {order} ({repeat} requests)")
            print("\n".join(out.getvalue().splitlines()[6:]))
        callers = os.environ.get("BENCH_PROFILE_CALLERS")  # e.g. "deepcopy|_bind": who calls them
        if callers:
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("cumulative").print_callers(callers)
            print(out.getvalue())


def seed() -> None:
    """A fresh bench database holding the load phase's data (tests.benchmarks.load.load_data)."""
    import psycopg

    database_url = os.environ["DATABASE_URL"]
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(database_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    import django

    django.setup()
    from django.core.management import call_command

    from tests.benchmarks.load import LISTINGS, load_data

    call_command("migrate", verbosity=0)
    # The full `make bench` has loaded as many listings again before the load phase (pages phase).
    from marketplace.models import User
    from tests.factories import CategoryFactory, ListingFactory

    seller = User.objects.create_user("profile-seller@example.test", None, display_name="Profile seller")
    category = CategoryFactory()
    for n in range(LISTINGS):
        ListingFactory(seller=seller, category=category, title=f"Page listing {n}", price_cents=2_000 + n)
    load_data(secret_key="unused")


def main() -> None:
    if os.environ.get(ROOT_ENV_FLAG) and sys.argv[1:] == ["--seed"]:
        seed()
        return
    if os.environ.get(ROOT_ENV_FLAG):
        child(sys.argv[1:], int(os.environ.get("BENCH_PROFILE_REPEAT", "200")))
        return
    from tests.benchmarks.load import RATE_LIMIT
    from tests.benchmarks.sse import ROOT, full_mode_env

    env = full_mode_env(
        database_url=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/offerhub_bench"),
        redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
    )
    env.update(
        {
            ROOT_ENV_FLAG: "1",
            "DJANGO_SETTINGS_MODULE": "tests.benchmarks.load_settings",
            "OFFERHUB_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT),
            "PYTHONPATH": str(ROOT),
            "STATIC_ROOT": tempfile.mkdtemp(prefix="offerhub-bench-profile-"),
        }
    )
    if os.environ.get("BENCH_PROFILE_SEED"):
        subprocess.run([sys.executable, "-m", "tests.benchmarks.load_profile", "--seed"], cwd=ROOT, env=env, check=True)
    collect = [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"]
    subprocess.run(collect, cwd=ROOT, env=env, check=True)
    names = sys.argv[1:] or ["bare", "health", "balance", "orders", "listings", "home", "visitor"]
    subprocess.run([sys.executable, "-m", "tests.benchmarks.load_profile", *names], cwd=ROOT, env=env, check=True)


if __name__ == "__main__":
    main()
