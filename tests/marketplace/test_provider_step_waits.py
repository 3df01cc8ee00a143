"""Provider-backed API calls wait for their step's outcome woken by a notification after commit
(offerhub.waits), not by polling, and under the ASGI server without holding a thread.

The step's drive is left to "a busy worker" (its task is not queued) so that the call has to
wait; the test then drives the escrow itself, from another thread, as the worker would. Where
only the notification may end the wait, the re-check interval is set beyond the test's length,
and the answer must come in the first half of the wait (OFFERHUB_SYNC_WAIT_SECONDS): the wait's
own end re-reads too, and would find the outcome without any notification."""

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection, transaction

from escrow.models import Escrow, EscrowStep
from escrow.runner import escrow_drive
from escrow.services import step_fail
from escrow.tasks import escrow_drive_task
from marketplace.models import Order
from offerhub.waits import _listener, order_changes, waiters_count
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
keys = (f"wait-{n}" for n in itertools.count())
NEVER = 3600.0  # a re-check interval no test lives to see
WAIT = 90  # OFFERHUB_SYNC_WAIT_SECONDS: a call not woken answers after this
WOKEN_WITHIN = WAIT / 2  # a generous bound for an answer woken at once (it takes milliseconds)
CLIENT_THREAD = "wait-client"


def post(client, path, *, key=None):
    try:
        return client.post(f"/api/v1{path}", {}, format="json", HTTP_IDEMPOTENCY_KEY=key or next(keys))
    finally:
        connection.close()  # this thread's own connection, not left to the test database's teardown


def reserved_order(client, buyer, seller, amount="1.00") -> str:
    body = {"buyer_id": buyer.public_id, "seller_id": seller.public_id, "amount": amount, "title": "Logo"}
    order = client.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY=next(keys)).json()["data"]
    assert post(client, f"/orders/{order['id']}/reserve").status_code == 201
    return order["id"]


def until(condition, what: str, *, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


@pytest.fixture
def busy_worker(monkeypatch):
    """The escrow's drive is not queued: its step stays open until the test drives it."""
    monkeypatch.setattr(escrow_drive_task, "delay", lambda pk: None)


@pytest.mark.parametrize("mode", ["redis", "embedded"])
def test_a_waiting_call_is_woken_by_the_notification_of_its_outcome(
    mode, chain, funded_user, trustless_work, writer, settings, busy_worker
):
    """Redis: the outcome commits in another thread and its message on offerhub:orders:changed
    wakes the call (in this mode nothing else does). Embedded mode (no Redis): the process's own
    notification does."""
    if mode == "redis":
        assert settings.REDIS_URL, "run with REDIS_URL set"
    else:
        settings.REDIS_URL = ""
    settings.OFFERHUB_SYNC_WAIT_SECONDS = WAIT
    settings.OFFERHUB_SYNC_WAIT_RECHECK_SECONDS = NEVER
    order_id = reserved_order(writer, funded_user("5.00"), funded_user("0"))
    with ThreadPoolExecutor(max_workers=1) as caller:
        answer = caller.submit(post, writer, f"/orders/{order_id}/escrow")
        until(lambda: waiters_count() == 1 or answer.done(), "the call waits")
        assert not answer.done(), answer.result().content
        if mode == "redis":
            # The listener wakes every waiter when it subscribes: that wake-up (which re-reads and
            # finds nothing) must come before the outcome, so that only its message can wake the call.
            until(lambda: _listener.subscribed, "the listener hears the channel")
        escrow_drive(escrow_pk=Escrow.objects.get(engagement_id=order_id).pk)  # the worker gets to it
        response = answer.result(timeout=WOKEN_WITHIN)
    assert response.status_code == 201, response.content
    assert response.json()["data"]["status"] == "ESCROW_FUNDING"
    assert waiters_count() == 0


def test_a_change_no_message_announces_is_found_by_the_fallback_recheck(
    chain, funded_user, trustless_work, writer, settings, busy_worker
):
    settings.OFFERHUB_SYNC_WAIT_SECONDS = WAIT
    settings.OFFERHUB_SYNC_WAIT_RECHECK_SECONDS = 0.2
    order_id = reserved_order(writer, funded_user("5.00"), funded_user("0"))
    with ThreadPoolExecutor(max_workers=1) as caller:
        answer = caller.submit(post, writer, f"/orders/{order_id}/escrow")
        until(lambda: waiters_count() == 1 or answer.done(), "the call waits")
        assert not answer.done(), answer.result().content
        # An UPDATE sends no signal: no message goes out, as when Redis lost it.
        Order.objects.filter(public_id=order_id).update(status=Order.Status.ESCROW_FUNDING)
        response = answer.result(timeout=WOKEN_WITHIN)
    assert response.status_code == 201, response.content
    assert response.json()["data"]["status"] == "ESCROW_FUNDING"


def _server_threads() -> int:
    """Threads of this process that are not the test's own clients (the server, the sandbox it
    serves, its executors and the waits' listener)."""
    return sum(1 for thread in threading.enumerate() if not thread.name.startswith(CLIENT_THREAD))


def test_waiting_calls_under_the_asgi_server_hold_no_thread_and_all_finish(
    chain, funded_user, trustless_work, asgi_server, make_api_key, settings, busy_worker
):
    """N calls wait at once under uvicorn: the server's threads grow by the waits' listener and
    its few database threads at most, not by one a call. Each answers its own outcome when it
    commits: 201, or the provider's refusal in the error envelope; the stored answer replays."""
    calls = 16
    settings.OFFERHUB_SYNC_WAIT_SECONDS = WAIT
    settings.OFFERHUB_SYNC_WAIT_RECHECK_SECONDS = NEVER
    _, secret = make_api_key(scopes=["read", "write"])
    headers = {"Authorization": f"Bearer {secret}"}
    buyer, seller = funded_user(f"{calls}.00"), funded_user("0")
    session = requests.Session()

    def call(path: str, key: str) -> requests.Response:
        return session.post(
            f"{asgi_server}/api/v1{path}", json={}, headers={**headers, "Idempotency-Key": key}, timeout=180
        )

    order_ids = []
    for n in range(calls):
        body = {"buyer_id": buyer.public_id, "seller_id": seller.public_id, "amount": "1.00", "title": f"Logo {n}"}
        created = session.post(
            f"{asgi_server}/api/v1/orders", json=body, headers={**headers, "Idempotency-Key": f"create-{n}"}, timeout=30
        )
        assert created.status_code == 201, created.content
        order_ids.append(created.json()["data"]["id"])
        assert call(f"/orders/{order_ids[-1]}/reserve", f"reserve-{n}").status_code == 201
    before = _server_threads()

    with ThreadPoolExecutor(max_workers=calls, thread_name_prefix=CLIENT_THREAD) as clients:
        answers = [clients.submit(call, f"/orders/{order_id}/escrow", f"escrow-{order_id}") for order_id in order_ids]
        until(lambda: waiters_count() == calls or any(a.done() for a in answers), f"{calls} calls wait", within=60)
        assert not any(a.done() for a in answers), [a.result().content for a in answers if a.done()]
        held = _server_threads() - before
        refused, *driven = order_ids
        step = EscrowStep.objects.get(escrow__engagement_id=refused, action=EscrowStep.Action.DEPLOY)
        step_fail(step=step, code="VALIDATION_ERROR", message="the provider refused the contract")
        for order_id in driven:
            escrow_drive(escrow_pk=Escrow.objects.get(engagement_id=order_id).pk)
        deadline = time.monotonic() + WOKEN_WITHIN
        responses = [answer.result(timeout=max(deadline - time.monotonic(), 0)) for answer in answers]

    assert held < calls // 2, f"{held} more threads while {calls} calls waited"
    refusal, *finished = responses
    assert refusal.status_code == 502 and refusal.json()["error"]["code"] == "PROVIDER_ERROR", refusal.content
    assert refusal.headers["X-Request-ID"] and refusal.headers["X-Idempotency-Key"] == f"escrow-{refused}"
    for response in finished:
        assert response.status_code == 201, response.content
        assert response.json()["data"]["status"] == "ESCROW_FUNDING"
        assert int(response.headers["Content-Length"]) == len(response.content)
        assert response.headers["X-Request-ID"] and "X-RateLimit-Limit" in response.headers
    replay = call(f"/orders/{driven[0]}/escrow", f"escrow-{driven[0]}")
    assert replay.status_code == 201 and replay.headers["Idempotency-Replay"] == "true"
    assert replay.json() == finished[0].json()
    assert waiters_count() == 0


def test_an_order_saved_wakes_its_waiters_once_committed_and_no_others(settings):
    """Any change of the order's row (a cancel, a support action) wakes its waiters, after the
    commit: not while the transaction is open, and not the waiters of another order."""
    assert settings.REDIS_URL, "run with REDIS_URL set"
    settings.OFFERHUB_SYNC_WAIT_RECHECK_SECONDS = NEVER
    order, other = (
        Order.objects.create(buyer=UserFactory(), seller=UserFactory(), amount=10_000_000, title=title)
        for title in ("Logo", "Banner")
    )
    with order_changes(order.public_id) as changes, order_changes(other.public_id) as others:
        until(lambda: _listener.subscribed, "the listener hears the channel")
        changes.wait(0), others.wait(0)  # the wake-up of every waiter at subscription: not the save's
        with transaction.atomic():
            Order.objects.get(pk=order.pk).save()
            assert not changes.wait(0.2)  # not before the commit
        assert changes.wait(WOKEN_WITHIN)
        assert not others.wait(0.2)
