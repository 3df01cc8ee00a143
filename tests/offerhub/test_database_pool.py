"""A server whose connection pool runs out answers 503 with Retry-After, never a 500, and
applies nothing it refused.

The server is the real ASGI application under uvicorn (as `make run` serves it) with the pool
ON and small, against the test database. The test exhausts the pool as a slow transaction
would: its own connection locks the member's ledger rows, so the requests that got a pooled
connection wait on the lock while holding it, and the others wait for the pool.
"""

import contextlib
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import psycopg
import pytest
import requests
from django.conf import settings

from marketplace.models import Order
from payments.balances import balance_snapshot
from payments.ledger import ledger_account, ledger_transfer, user_accounts
from payments.models import Hold, LedgerAccount
from tests.factories import UserFactory
from tests.offerhub.test_database_connections import ROOT, start_server, stop_server

pytestmark = [
    pytest.mark.skipif(
        not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"), reason="pools PostgreSQL connections"
    ),
    pytest.mark.django_db(transaction=True),  # the server, another process, must see the test's rows
]

POOL_TIMEOUT = 2  # seconds a request waits for a pooled connection (the default 10 would only slow the test)
HOLD_LIMIT = 25  # seconds the lock is held at most, waiting for the requests that cannot get a connection
USD = 10_000_000


def server_environment(pool_size: int) -> dict:
    return {
        "DATABASE_POOL_MAX_SIZE": str(pool_size),
        "DATABASE_POOL_TIMEOUT": str(POOL_TIMEOUT),
        "OFFERHUB_RATE_LIMIT_PER_MINUTE": "100000",
    }


@pytest.fixture
def member(db):
    """A member with $100 available in the ledger (no chain: reserving never reads it)."""
    user = UserFactory()
    ledger_transfer(
        idempotency_key=f"test-credit:{user.public_id}",
        kind="deposit",
        source=ledger_account(kind=LedgerAccount.Kind.EXTERNAL_STELLAR),
        destination=user_accounts(user)[0],
        amount=100 * USD,
    )
    return user


@pytest.fixture
def secret(make_api_key):
    return make_api_key(scopes=("read", "write"))[1]


@contextlib.contextmanager
def ledger_rows_locked(params: dict, user):
    """Lock the member's ledger accounts in a connection of the test's own until the block ends."""
    with psycopg.connect(**params) as connection:
        table = LedgerAccount._meta.db_table
        connection.execute(f"SELECT id FROM {table} WHERE user_id = %s FOR UPDATE", [user.pk])  # noqa: S608
        yield
        connection.rollback()


def waiting_on_a_lock(params: dict, application_name: str) -> int:
    with psycopg.connect(**params, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
            [application_name],
        ).fetchone()
        return row[0]


def reserve(url: str, secret: str, order_id: str) -> requests.Response:
    return requests.post(
        f"{url}/reserve",
        json={"amount": "1.00", "orderId": order_id},
        headers={"Authorization": f"Bearer {secret}", "Idempotency-Key": f"key-{order_id}"},
        timeout=60,
    )


def assert_unavailable(response: requests.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    error = response.json()["error"]
    assert error["code"] == "SERVICE_UNAVAILABLE" and error["message"] and error["details"]["requestId"]


def test_a_burst_of_reserves_beyond_the_pool_answers_503_and_applies_nothing_it_refused(
    database, member, secret, tmp_path
):
    burst, pool_size = 30, 3
    log = tmp_path / "server.log"
    server, base = start_server("uvicorn", database["url"], log, server_environment(pool_size))
    url = f"{base}/api/v1/users/{member.public_id}/balance"
    order_ids = [f"burst-{n}" for n in range(burst)]
    try:
        with ThreadPoolExecutor(max_workers=burst) as requests_in_flight:
            with ledger_rows_locked(database["params"], member):
                futures = {o: requests_in_flight.submit(reserve, url, secret, o) for o in order_ids}
                # Those beyond the pool cannot get a connection while the lock stands: let them answer.
                deadline = time.monotonic() + HOLD_LIMIT
                while sum(f.done() for f in futures.values()) < burst - pool_size and time.monotonic() < deadline:
                    time.sleep(0.05)
            answers = {order_id: future.result() for order_id, future in futures.items()}
        statuses = sorted(response.status_code for response in answers.values())
        assert set(statuses) <= {200, 503}, (statuses, log.read_text()[-3000:])
        refused = [order_id for order_id, response in answers.items() if response.status_code == 503]
        assert refused, "the pool was never exhausted"
        print(f"{burst} reserves on a pool of {pool_size}: {len(refused)} answered 503, the rest 200")
        for order_id in refused:
            assert_unavailable(answers[order_id])
        held = set(Hold.objects.filter(user=member, status=Hold.Status.ACTIVE).values_list("reference", flat=True))
        assert held == set(order_ids) - set(refused)
        balance = balance_snapshot(user=member)
        assert balance.reserved == len(held) * USD and balance.available + balance.reserved == 100 * USD

        # A refusal released its Idempotency-Key: the same request again is served.
        retried = [reserve(url, secret, order_id) for order_id in refused]
        assert [response.status_code for response in retried] == [200] * len(refused)
        balance = balance_snapshot(user=member)
        assert (balance.available, balance.reserved) == (70 * USD, 30 * USD)
        read = requests.get(url, headers={"Authorization": f"Bearer {secret}"}, timeout=10)
        assert Decimal(read.json()["reserved"]) == 30
    finally:
        stop_server(server)


def test_an_exhausted_pool_answers_503_with_retry_after_on_the_api_and_the_pages(database, member, secret, tmp_path):
    log = tmp_path / "server.log"
    server, base = start_server("uvicorn", database["url"], log, server_environment(pool_size=1))
    url = f"{base}/api/v1/users/{member.public_id}/balance"
    try:
        with ThreadPoolExecutor(max_workers=1) as background, ledger_rows_locked(database["params"], member):
            holder = background.submit(reserve, url, secret, "holder")
            deadline = time.monotonic() + HOLD_LIMIT
            while not waiting_on_a_lock(database["params"], database["name"]) and time.monotonic() < deadline:
                time.sleep(0.05)
            # The pool's one connection waits on the lock: nothing else can be served.
            read = requests.get(url, headers={"Authorization": f"Bearer {secret}"}, timeout=60)
            page = requests.get(f"{base}/", timeout=60)
        assert_unavailable(read)
        assert page.status_code == 503 and int(page.headers["Retry-After"]) > 0, log.read_text()[-3000:]
        assert "text/html" in page.headers["Content-Type"]
        assert holder.result().status_code == 200
        assert requests.get(url, headers={"Authorization": f"Bearer {secret}"}, timeout=10).json()["reserved"] == "1.00"
    finally:
        stop_server(server)


WAIT_FOR_A_STEP = """
import sys, threading
import django
django.setup()
from django.db import connection
from marketplace.models import Order
from marketplace.orders_api import ProviderStep, provider_step_await

order = Order.objects.get(public_id=sys.argv[1])
connection.close()
never_done = ProviderStep(actions=("deploy",), pending=lambda o, e: True, succeeded=lambda o, e: False)
outcome = {}

def wait():
    try:
        outcome["finished"] = provider_step_await(order, never_done, after=0)[1]
    finally:
        connection.close()

waiter = threading.Thread(target=wait)
waiter.start()
reads = 0
while waiter.is_alive():  # each read needs the pool's one connection
    Order.objects.filter(pk=order.pk).exists()
    connection.close()
    reads += 1
waiter.join()
print(outcome["finished"], reads)
"""


def test_waiting_for_a_chain_step_does_not_hold_a_pooled_connection(database, member):
    """The API's wait for a provider step (up to OFFERHUB_SYNC_WAIT_SECONDS) leaves the pool's
    connections to others between its polls: with a pool of one, reads go on beside it."""
    order = Order.objects.create(buyer=member, seller=UserFactory(), amount=10 * USD, title="Logo")
    environment = {
        **server_environment(pool_size=1),
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "ENV_FILE": "",
        "DJANGO_SETTINGS_MODULE": "offerhub.settings",
        "DATABASE_URL": database["url"],
        "OFFERHUB_SYNC_WAIT_SECONDS": "3",
    }
    waited = subprocess.run(
        [sys.executable, "-c", WAIT_FOR_A_STEP, order.public_id],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert waited.returncode == 0, waited.stderr[-3000:]
    finished, reads = waited.stdout.split()
    assert finished == "False" and int(reads) > 0
