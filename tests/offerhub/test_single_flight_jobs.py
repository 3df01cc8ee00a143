"""Periodic jobs are single-flight across workers and beats (offerhub.leases): two workers and
two beats against one database read no Horizon page twice, credit each payment once, never
move the deposit cursor back, and queue one drive per stale escrow. The sandbox Horizon is
reached through a counting proxy that can also hold a request (a slow run, a stalled worker)."""

import ast
import json
import threading
import time
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis
import requests
from django.conf import settings as django_settings
from django.db import connection
from django.db.models import F
from django.utils import timezone
from stellar_sdk import Asset, Keypair, TransactionBuilder

from escrow.models import Escrow, EscrowStep
from escrow.tasks import escrow_steps_resume
from offerhub.celery import app as celery_app
from offerhub.leases import job_lease, job_lease_claim, job_lease_release
from offerhub.models import JobLease
from payments.crypto import secret_encrypt
from payments.deposits import chain_cursor_advance, deposits_sync
from payments.ledger import user_accounts
from payments.models import ChainCursor, JournalEntry, Wallet
from payments.stellar import horizon, transaction_submit
from payments.tasks import deposits_watch, wallets_activate_pending
from payments.wallets import DEPOSIT_CURSOR, platform_account, wallet_ensure
from payments.withdrawals import account_submission_lock
from tests.factories import UserFactory
from tests.payments import conftest as payments_fixtures

pytestmark = pytest.mark.django_db(transaction=True)
chain = payments_fixtures.chain  # the sandbox Horizon over HTTP

HOLD_LIMIT = 15  # seconds a held request waits at most: a broken test fails instead of hanging


class HorizonProxy(ThreadingHTTPServer):
    """Forwards to the sandbox Horizon, records every request (and the payment records each
    feed read returned), and holds the first request matching a registered path until released."""

    daemon_threads = True

    def __init__(self, upstream: str):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream
        self.requests: list[tuple[str, str]] = []
        self.payment_ids_served: list[str] = []
        self.holds: dict[str, tuple[threading.Event, threading.Event]] = {}
        self.guard = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def hold(self, path_prefix: str) -> tuple[threading.Event, threading.Event]:
        """The next request to `path_prefix` sets `reached`, then waits for `release`."""
        events = (threading.Event(), threading.Event())
        self.holds[path_prefix] = events
        return events

    def count(self, method: str, path_prefix: str) -> int:
        with self.guard:
            return sum(1 for m, p in self.requests if m == method and p.startswith(path_prefix))


class _ProxyHandler(BaseHTTPRequestHandler):
    server: HorizonProxy

    def log_message(self, *args):
        pass

    def _forward(self, method: str):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.guard:
            self.server.requests.append((method, self.path))
            held = next((p for p in self.server.holds if self.path.startswith(p)), None)
            events = self.server.holds.pop(held) if held else None
        if events:
            reached, release = events
            reached.set()
            release.wait(HOLD_LIMIT)
        headers = {"Content-Type": self.headers["Content-Type"]} if self.headers.get("Content-Type") else {}
        upstream = requests.request(method, self.server.upstream + self.path, data=body, headers=headers, timeout=10)
        if method == "GET" and self.path.startswith("/payments") and upstream.ok:
            ids = [record["id"] for record in upstream.json()["_embedded"]["records"]]
            with self.server.guard:
                self.server.payment_ids_served.extend(ids)
        self.send_response(upstream.status_code)
        self.send_header("Content-Type", upstream.headers.get("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(upstream.content)))
        self.end_headers()
        self.wfile.write(upstream.content)

    def do_GET(self):
        self._forward("GET")

    def do_POST(self):
        self._forward("POST")


@pytest.fixture
def proxy(chain, settings):
    server = HorizonProxy(chain.url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.STELLAR_HORIZON_URL = server.url
    settings.HORIZON_TIMEOUT_SECONDS = HOLD_LIMIT + 5  # a held request is slow, not lost
    yield server
    for _, release in list(server.holds.values()):
        release.set()
    server.shutdown()
    server.server_close()


def in_thread(target, *args, results: list | None = None, start: threading.Barrier | None = None):
    """A thread acting as a worker or a beat: its own database connection, closed at the end."""

    def run():
        try:
            if start is not None:
                start.wait(HOLD_LIMIT)
            outcome = target(*args)
            if results is not None:
                results.append(outcome)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


class CursorRecorder:
    """Reads the deposit cursor over and over in a thread of its own, keeping each value seen."""

    def __init__(self):
        self.seen: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self):
        try:
            while not self.stop.is_set():
                token = ChainCursor.objects.filter(name=DEPOSIT_CURSOR).values_list("paging_token", flat=True).first()
                if token and (not self.seen or self.seen[-1] != int(token)):
                    self.seen.append(int(token))
        finally:
            connection.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(HOLD_LIMIT)

    def assert_forward_only(self):
        assert self.seen == sorted(self.seen), f"the cursor moved back: {self.seen}"


def cursor() -> int:
    return int(ChainCursor.objects.get(name=DEPOSIT_CURSOR).paging_token)


def credited(wallet: Wallet) -> Decimal:
    """What the ledger credited the wallet's owner (each payment once, or this is more)."""
    return Decimal(user_accounts(wallet.user)[0].balance) / 10_000_000


def deposit_keys() -> list[str]:
    return list(
        JournalEntry.objects.filter(idempotency_key__startswith="stellar-deposit:").values_list(
            "idempotency_key", flat=True
        )
    )


def pending_wallet() -> Wallet:
    """A wallet whose activation failed at first (the chain was down): the resolver's work."""
    keypair = Keypair.random()
    ciphertext, version = secret_encrypt(keypair.secret)
    wallet = Wallet.objects.create(
        user=UserFactory(), public_key=keypair.public_key, encrypted_secret=ciphertext, key_version=version
    )
    Wallet.objects.filter(pk=wallet.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    return wallet


def test_two_workers_and_two_beats_read_each_page_once_and_credit_each_payment_once(chain, proxy):
    wallets = [wallet_ensure(user=UserFactory()) for _ in range(3)]
    for number, wallet in enumerate(wallets, start=1):
        chain.mint(wallet.public_key, f"{number}.00")
    to_activate = pending_wallet()
    start_cursor = cursor()

    with CursorRecorder() as recorder:
        # Worker 1 takes the deposit watcher and worker 2 the activation resolver; both are slow
        # (held inside their first Horizon request) while the two beats fire every job again.
        feed_reached, feed_release = proxy.hold("/payments")
        # (A wallet whose activation was never sent is not looked up: the resolver's first request
        # is the platform's sequence number, under the platform's submission lock.)
        account_reached, account_release = proxy.hold(f"/accounts/{platform_account().public_key}")
        workers = [in_thread(deposits_watch, results=(watched := [])), in_thread(wallets_activate_pending)]
        assert feed_reached.wait(HOLD_LIMIT) and account_reached.wait(HOLD_LIMIT)
        before = len(proxy.requests)

        tick = threading.Barrier(2)
        beat_results: list[int] = []

        def beat():  # a beat sending the jobs, run at once by free workers (in-process)
            jobs = [deposits_watch, wallets_activate_pending] * 2
            return [job.delay().result for job in jobs]  # eager: run here, as by a free worker

        beats = [in_thread(beat, results=beat_results, start=tick) for _ in range(2)]
        for thread in beats:
            thread.join(HOLD_LIMIT)
        # Every run the beats started found the lease held and returned at once, without a request.
        assert beat_results == [[0, 0, 0, 0], [0, 0, 0, 0]]
        assert len(proxy.requests) == before

        feed_release.set()
        account_release.set()
        for thread in workers:
            thread.join(HOLD_LIMIT)
        assert watched == [3]

        # Now the beats and workers all fire at once, with nothing held: still one reader at a time.
        chain.mint(wallets[0].public_key, "4.00")
        together = threading.Barrier(4)
        runs = [in_thread(lambda: [deposits_watch() for _ in range(3)], start=together) for _ in range(4)]
        for thread in runs:
            thread.join(HOLD_LIMIT)
    recorder.assert_forward_only()

    # No payment record was served twice: no feed page was read twice.
    served = proxy.payment_ids_served
    assert len(served) == len(set(served)), served
    # Each payment credited once, to the right wallet.
    assert [credited(w) for w in wallets] == [Decimal("5"), Decimal("2"), Decimal("3")]
    keys = deposit_keys()
    assert len(keys) == len(set(keys)) == 4
    # The pending wallet was activated by one run, without a look at the chain first (its
    # activation had never been sent; a second run would have found it ACTIVE in the database).
    assert Wallet.objects.get(pk=to_activate.pk).status == Wallet.Status.ACTIVE
    assert proxy.count("GET", f"/accounts/{to_activate.public_key}") == 0
    assert cursor() > start_cursor
    assert not JobLease.objects.exclude(holder="").exists()  # every lease released


def test_a_stalled_run_is_taken_over_and_cannot_move_the_cursor_back(chain, proxy):
    wallet = wallet_ensure(user=UserFactory())
    for amount in ("1.00", "2.00", "3.00", "4.00", "5.00"):
        chain.mint(wallet.public_key, amount)

    with CursorRecorder() as recorder:
        reached, release = proxy.hold("/payments")
        stalled = in_thread(lambda: deposits_sync(page_size=2), results=(stalled_result := []))
        assert reached.wait(HOLD_LIMIT)
        # The stalled run outlives its lease (as if its worker hung): the next run takes it over.
        JobLease.objects.filter(name="deposits_sync").update(expires_at=timezone.now() - timedelta(seconds=1))
        assert deposits_sync(page_size=2) == 5
        caught_up = cursor()

        release.set()  # the stalled run wakes up with the first page, far behind
        stalled.join(HOLD_LIMIT)
    assert stalled_result == [0]  # it credited nothing twice and stopped
    assert cursor() == caught_up
    recorder.assert_forward_only()
    assert credited(wallet) == Decimal("15")
    assert len(deposit_keys()) == 5

    # The cursor write itself refuses to go back, and compares numerically, not as text.
    assert not chain_cursor_advance(name=DEPOSIT_CURSOR, paging_token=str(caught_up - 1))
    assert not chain_cursor_advance(name=DEPOSIT_CURSOR, paging_token=str(caught_up))
    ChainCursor.objects.filter(name=DEPOSIT_CURSOR).update(paging_token="9")
    assert chain_cursor_advance(name=DEPOSIT_CURSOR, paging_token="10")
    assert cursor() == 10


def test_a_dead_workers_lease_is_taken_over_once_it_expires(chain, proxy):
    wallet = wallet_ensure(user=UserFactory())
    chain.mint(wallet.public_key, "7.00")
    # A worker claimed the watcher and was killed (kill -9): its lease stays until it expires.
    assert job_lease_claim(name="deposits_sync", holder="dead-node:1:1:x", ttl=timedelta(minutes=2))

    assert deposits_watch() == 0
    assert proxy.count("GET", "/payments") == 0  # no read while the lease is held

    JobLease.objects.filter(name="deposits_sync").update(expires_at=timezone.now() - timedelta(seconds=1))
    assert deposits_watch() == 1
    assert credited(wallet) == Decimal("7")
    lease = JobLease.objects.get(name="deposits_sync")
    assert lease.holder == "" and lease.claims == 2 and "free" in str(lease)
    # The dead worker's late release does not free a lease someone else holds now.
    with job_lease(name="deposits_sync", ttl=timedelta(minutes=2)) as mine:
        assert mine is not None
        assert not job_lease_release(name="deposits_sync", holder="dead-node:1:1:x")
        with job_lease(name="deposits_sync", ttl=timedelta(minutes=2)) as other:
            assert other is None


@pytest.fixture
def real_broker():
    """The resume job queues its drives on the real broker (Redis), where nothing consumes them."""
    if not django_settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.skip("needs the Redis broker (REDIS_URL)")
    queue = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    queue.delete("celery")
    celery_app.conf.task_always_eager = False
    yield queue
    celery_app.conf.task_always_eager = True
    queue.delete("celery")


def drives_queued(queue) -> list[int]:
    messages = [json.loads(raw) for raw in queue.lrange("celery", 0, -1)]
    drives = [m for m in messages if m["headers"]["task"] == "escrow.tasks.escrow_drive_task"]
    return sorted(ast.literal_eval(m["headers"]["argsrepr"])[0] for m in drives)


def time_passes(by: timedelta) -> None:
    """Every step's clocks move back by `by`, as if that much time had passed."""
    EscrowStep.objects.update(updated_at=F("updated_at") - by, next_attempt_at=F("next_attempt_at") - by)


def stale_escrow(order: str) -> Escrow:
    buyer, seller = UserFactory(), UserFactory()
    escrow = Escrow.objects.create(
        engagement_id=order,
        type="single-release",
        title="Logo",
        buyer=buyer,
        seller=seller,
        hold_reference=order,
        amount=10_000_000,
    )
    step = EscrowStep.objects.create(escrow=escrow, key=f"{order}:deploy", action="deploy", signer="G" + "A" * 55)
    EscrowStep.objects.filter(pk=step.pk).update(updated_at=timezone.now() - timedelta(minutes=10))
    return escrow


def test_the_resume_job_queues_each_escrows_drive_once(real_broker):
    escrows = [stale_escrow("ord_a"), stale_escrow("ord_b")]
    # Two beats fire the job at once, then it is queued twice more in a row.
    together = threading.Barrier(2)
    results: list[int] = []
    threads = [in_thread(escrow_steps_resume, results=results, start=together) for _ in range(2)]
    for thread in threads:
        thread.join(HOLD_LIMIT)
    assert sorted(results) == [0, 2]  # one queued both; the other found the lease held or the steps claimed
    assert escrow_steps_resume() == 0
    # Past the old two-minute claim, the drives still wait in the queue: not queued again.
    time_passes(timedelta(minutes=3))
    assert escrow_steps_resume() == 0
    assert drives_queued(real_broker) == sorted(e.pk for e in escrows)

    # The messages were lost (the broker's data with them): after the queued window, queued again.
    real_broker.delete("celery")
    time_passes(timedelta(minutes=8))
    assert escrow_steps_resume() == 2
    assert drives_queued(real_broker) == sorted(e.pk for e in escrows)


def waiting_for_submission_lock(excluding: int) -> bool:
    """Whether another session of this database is polling for an account's submission lease
    (its last query reads or claims a `stellar-account:` lease)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid NOT IN (%s, pg_backend_pid())"
            " AND datname = current_database() AND query LIKE %s AND query LIKE %s",
            [excluding, f"%{JobLease._meta.db_table}%", "%stellar-account:%"],
        )
        return cursor.fetchone()[0] > 0


def test_signers_made_just_now_are_funded_without_a_lookup_that_could_only_answer_404(chain, proxy, settings):
    """A start-up's log shows no Horizon 404s: a signer key made here cannot be on chain yet, so
    it is funded at once and looked up only to verify it (signers made earlier are looked up)."""
    from payments.models import PlatformSigner
    from payments.wallets import platform_signers_bootstrap

    earlier = list(PlatformSigner.objects.values_list("public_key", flat=True))
    settings.OFFERHUB_PLATFORM_SIGNERS = len(earlier) + 2
    signers = platform_signers_bootstrap(treasury=platform_account())
    made = [signer.public_key for signer in signers if signer.public_key not in earlier]
    assert len(made) == 2 and all(signer.funded_at for signer in signers)
    assert [proxy.count("GET", f"/accounts/{key}") for key in made] == [1, 1]  # the check after funding
    assert all(proxy.count("GET", f"/accounts/{key}") == 1 for key in earlier)  # verified each run


def test_wallet_activation_signs_under_the_platform_submission_lock(chain, proxy):
    platform = platform_account()
    to_activate = pending_wallet()
    outsider = chain.outside_account(trustline=False)
    holding, release, holder_pid = threading.Event(), threading.Event(), []

    def another_platform_submission():  # a bridge, a sweep, an escrow call: any platform-signed one
        with account_submission_lock(platform.public_key):
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                holder_pid.append(cursor.fetchone()[0])
            holding.set()
            release.wait(HOLD_LIMIT)
            tx = (
                TransactionBuilder(horizon().load_account(platform.public_key), chain.passphrase, base_fee=100)
                .append_payment_op(outsider.public_key, Asset.native(), "1")
                .set_timeout(300)
                .build()
            )
            tx.sign(platform.keypair())
            transaction_submit(tx)

    other = in_thread(another_platform_submission)
    assert holding.wait(HOLD_LIMIT)
    submissions = proxy.count("POST", "/transactions")
    activation = in_thread(wallets_activate_pending, results=(activated := []))
    for _ in range(HOLD_LIMIT * 20):  # until the activation polls for the lock (bounded, not timed)
        if waiting_for_submission_lock(holder_pid[0]):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the activation never waited for the platform's submission lock")
    # It did not look the wallet up (its activation was never sent: its key never left OfferHub, so
    # it cannot be on chain), and has not loaded the platform's sequence number or submitted
    # anything while another submission holds it.
    assert proxy.count("GET", f"/accounts/{to_activate.public_key}") == 0
    assert proxy.count("POST", "/transactions") == submissions
    release.set()
    other.join(HOLD_LIMIT)
    activation.join(HOLD_LIMIT)

    assert activated == [1]
    assert Wallet.objects.get(pk=to_activate.pk).status == Wallet.Status.ACTIVE
    # One submission each: the activation read the sequence number after the other one used it.
    assert proxy.count("POST", "/transactions") == submissions + 2
