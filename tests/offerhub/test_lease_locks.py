"""Cross-process locks are lease rows with a fencing token (offerhub.locks): one holder at a
time across connections, nothing kept by a database session between statements (so a
transaction-pooling PgBouncer is fine), a killed holder blocks others only until its lease
expires, a stalled holder whose lease was taken over cannot store a submission, and a
signer's submission lock is not held while Trustless Work builds its transaction."""

import os
import signal
import subprocess
import sys
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from django.db import connection, transaction
from django.db.models import F
from stellar_sdk import Asset, FeeBumpTransactionEnvelope, TransactionBuilder

from escrow.models import Escrow, EscrowStep
from escrow.runner import escrow_lock_name
from escrow.services import escrow_open
from offerhub.leases import LeaseLost
from offerhub.locks import LOCK_TTL, LockTimeout, lease_lock
from offerhub.models import JobLease
from payments.ledger import hold_reserve
from payments.models import Withdrawal
from payments.stellar import StellarError, horizon, transaction_submit
from payments.wallets import platform_signer
from payments.withdrawals import account_submission_lock, submission_lock_name, withdrawal_submit
from sandbox.models import SandboxEscrowCall, SandboxPayment
from tests.escrow.test_lifecycle import USD
from tests.offerhub.test_single_flight_jobs import HOLD_LIMIT, in_thread, proxy  # noqa: F401  (fixture)
from tests.payments.conftest import chain, funded_user  # noqa: F401  (fixtures)
from tests.payments.test_withdrawals import withdraw

pytestmark = pytest.mark.django_db(transaction=True)

BRIEF = 0.3  # seconds a claim that must fail waits before it gives up (no timing is asserted)


def expire(name: str) -> None:
    """The holder stalls (or died) past its TTL: its lease's expiry is behind the database clock."""
    assert JobLease.objects.filter(name=name).update(expires_at=F("expires_at") - LOCK_TTL) == 1


def advisory_locks_held() -> int:
    with connection.cursor() as cursor:
        cursor.execute(  # in this database: the cluster serves others
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return cursor.fetchone()[0]


def claim_result(name: str) -> str:
    """What another worker gets when it asks for the lock now."""
    try:
        with lease_lock(name, timeout=BRIEF) as lease:
            return f"claimed #{lease.token}"
    except LockTimeout:
        return "busy"


def in_another_thread(target, *args):
    results: list = []
    in_thread(target, *args, results=results).join(HOLD_LIMIT)
    return results[0]


def submission_claim(account: str) -> str:
    try:
        with account_submission_lock(account, timeout=BRIEF) as lease:
            return f"claimed #{lease.token}"
    except StellarError as refused:
        return refused.code


def test_one_holder_at_a_time_across_connections_and_free_again_on_release():
    holding, release = threading.Event(), threading.Event()

    def hold():
        with lease_lock("test:exclusive", timeout=1) as outer, account_submission_lock("GHOLDER", timeout=1):
            with lease_lock("test:exclusive", timeout=BRIEF) as inner:  # re-entrant in one context
                assert inner is outer
            holding.set()
            release.wait(HOLD_LIMIT)

    holder = in_thread(hold)
    assert holding.wait(HOLD_LIMIT)
    assert claim_result("test:exclusive") == "busy"
    assert submission_claim("GHOLDER") == "PROVIDER_UNAVAILABLE"  # the submission lock's own refusal
    assert submission_claim("GSOMEONE-ELSE") == "claimed #1"  # other accounts do not wait
    release.set()
    holder.join(HOLD_LIMIT)
    assert claim_result("test:exclusive") == "claimed #2"  # each claim's fencing token is one more
    assert submission_claim("GHOLDER") == "claimed #2"


def test_a_lock_keeps_nothing_in_the_database_session_between_statements():
    with lease_lock("test:sessionless", timeout=1) as lease:
        connection.close()  # as a transaction pooler would: the next statement gets another connection
        assert in_another_thread(claim_result, "test:sessionless") == "busy"
        assert advisory_locks_held() == 0
        connection.close()
        with transaction.atomic():
            lease.fence()  # the holder's write, on yet another connection
        connection.close()
    # Released by a statement on a fresh connection: free for the next worker at once.
    assert in_another_thread(claim_result, "test:sessionless") == "claimed #2"
    assert advisory_locks_held() == 0


HOLD_AND_WAIT_TO_BE_KILLED = """
import sys, time
import django
django.setup()
from payments.withdrawals import account_submission_lock
with account_submission_lock(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_holder_killed_mid_submission_blocks_the_account_only_until_its_lease_expires():
    account = "GKILLEDHOLDER"
    database = connection.settings_dict
    url = f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
    worker = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_WAIT_TO_BE_KILLED, account],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "offerhub.settings"},
        stdout=subprocess.PIPE,
    )
    try:
        assert worker.stdout.readline().strip() == b"holding"
    finally:
        os.kill(worker.pid, signal.SIGKILL)  # kill -9: no release, no rollback of anything
        worker.wait(HOLD_LIMIT)
    name = submission_lock_name(account)
    assert claim_result(name) == "busy"  # its lease outlives it
    assert advisory_locks_held() == 0
    expire(name)
    assert claim_result(name) == "claimed #2"
    with account_submission_lock(account, timeout=BRIEF) as lease:
        assert lease.token == 3


def test_a_stalled_holder_whose_lease_was_taken_over_cannot_write():
    written: list[str] = []
    with lease_lock("test:fenced", timeout=1) as stalled:
        expire("test:fenced")

        def take_over():
            with lease_lock("test:fenced", timeout=1) as lease, transaction.atomic():
                lease.fence()
                written.append(f"taker #{lease.token}")
            return "done"

        assert in_another_thread(take_over) == "done"
        with pytest.raises(LeaseLost), transaction.atomic():
            stalled.fence()
            written.append("stalled")
        with pytest.raises(LeaseLost):
            stalled.renew()
    assert written == ["taker #2"]


def test_a_write_fenced_on_two_leases_is_one_statement_made_only_while_both_hold():
    """leases_fenced_update: the escrow's and the signer's fences and the step's UPDATE together;
    a takeover of either lease refuses the write (LeaseLost), and nothing is written."""
    from django.test.utils import CaptureQueriesContext

    from offerhub.leases import leases_fenced_update
    from offerhub.models import EmailNotification

    row = EmailNotification.objects.create(key="fenced", event_id="evt", subject="before", body="")
    rows = EmailNotification.objects.filter(pk=row.pk, subject="before")
    with lease_lock("test:fence-a", timeout=1) as first, lease_lock("test:fence-b", timeout=1) as second:
        renewed_before = JobLease.objects.get(name="test:fence-b").renewed_at
        with transaction.atomic(), CaptureQueriesContext(connection) as queries:
            assert leases_fenced_update([first, second], rows, subject="after") == 1
        assert len(queries) == 1
        assert JobLease.objects.get(name="test:fence-b").renewed_at > renewed_before  # renewed
        with transaction.atomic():  # the row changed meanwhile: nothing to write, the leases still held
            assert leases_fenced_update([first, second], rows, subject="again") == 0

        for lost, name in ((second, "test:fence-b"), (first, "test:fence-a")):
            expire(name)
            assert in_another_thread(claim_result, name) == f"claimed #{lost.token + 1}"
            rows = EmailNotification.objects.filter(pk=row.pk)
            with pytest.raises(LeaseLost, match=name), transaction.atomic():
                leases_fenced_update([first, second], rows, subject=f"stalled {name}")
            assert EmailNotification.objects.get(pk=row.pk).subject == "after"
    with pytest.raises(RuntimeError):  # outside a transaction it guards nothing
        leases_fenced_update([first], rows, subject="no")


def test_a_claim_with_its_work_writes_only_when_it_takes_the_lease():
    """lease_claim_with: the claim and the holder's first write in one statement; a busy lease
    gets neither (and lease_lock's first try falls back to the plain claim afterwards)."""
    from offerhub.leases import lease_claim_with
    from offerhub.locks import lease_wait
    from offerhub.models import EmailNotification

    row = EmailNotification.objects.create(key="claimed-with", event_id="evt", subject="before", body="")
    then = (
        "UPDATE offerhub_emailnotification SET subject = %s WHERE id = %s AND {claimed} RETURNING id, subject",
        ["taken", row.pk],
    )
    token, rows = lease_claim_with(name="test:with", holder="one", ttl=LOCK_TTL, then=then)
    assert (token, rows) == (1, [(row.pk, "taken")])
    row.subject = "before"
    row.save()
    assert lease_claim_with(name="test:with", holder="two", ttl=LOCK_TTL, then=then) == (None, [])
    assert EmailNotification.objects.get(pk=row.pk).subject == "before"  # not the holder: nothing written
    with pytest.raises(LockTimeout):
        lease_wait(name="test:with", holder="two", timeout=BRIEF, first_with=then)
    assert EmailNotification.objects.get(pk=row.pk).subject == "before"
    expire("test:with")
    lease = lease_wait(name="test:with", holder="two", timeout=BRIEF, first_with=then)
    assert (lease.token, lease.first_rows) == (2, [(row.pk, "taken")])


def test_a_claim_with_its_work_that_waited_for_the_holder_to_let_go_reads_nothing_stale():
    """A claim with its work that had to wait on the lease row for a holder who wrote and then let
    go would read that work in a snapshot older than the holder's writes: it does not claim (the
    release's expiry is later than the claim's clock) and the caller's next try claims with a
    fresh snapshot, so no stale row is handed to the new holder."""
    from offerhub.leases import job_lease_release, lease_claim, lease_claim_with
    from offerhub.locks import lease_wait
    from offerhub.models import EmailNotification

    row = EmailNotification.objects.create(key="stale-with", event_id="evt", subject="old", body="")
    then = ("SELECT id, subject FROM offerhub_emailnotification WHERE id = %s AND {claimed}", [row.pk])
    with lease_lock("test:stale", timeout=BRIEF) as holder:
        assert holder.token == 1
    results: list = []
    with transaction.atomic():  # a holder's claim, write and letting go, committed together
        assert lease_claim(name="test:stale", holder="busy-worker", ttl=LOCK_TTL) == 2  # locks the lease row
        EmailNotification.objects.filter(pk=row.pk).update(subject="new")
        waiting = in_thread(
            lambda: lease_claim_with(name="test:stale", holder="next", ttl=LOCK_TTL, then=then), results=results
        )
        waiting.join(1.0)  # its statement's snapshot is taken; it waits on the lease row
        assert waiting.is_alive()
        job_lease_release(name="test:stale", holder="busy-worker")
    waiting.join(HOLD_LIMIT)
    assert results == [(None, [])]  # it would have read subject "old": no claim
    lease = lease_wait(name="test:stale", holder="next", timeout=BRIEF, first_with=then)
    assert (lease.token, lease.first_rows) == (3, [(row.pk, "new")])


def test_a_stalled_withdrawal_cannot_store_a_second_payment_after_a_takeover(chain, funded_user, proxy):  # noqa: F811
    user = funded_user("50.00")
    outside = chain.outside_account()
    wallet = user.wallet.public_key
    # The first worker stalls under the wallet's submission lock, loading the sequence number.
    reached, release = proxy.hold(f"/accounts/{wallet}")
    stalled: list[Withdrawal] = []
    first = in_thread(withdraw, user, outside.public_key, "20.00", results=stalled)
    assert reached.wait(HOLD_LIMIT)
    sent_before = proxy.count("POST", "/transactions")
    # It stalls past its TTL; the resolver takes the lease over and pays.
    expire(submission_lock_name(wallet))
    withdrawal = Withdrawal.objects.get(user=user)
    paid = withdrawal_submit(withdrawal=withdrawal)
    assert paid.status == Withdrawal.Status.COMPLETED
    # The stalled worker wakes up with a signed payment for a fresh sequence number: its write is fenced.
    release.set()
    first.join(HOLD_LIMIT)
    assert [w.status for w in stalled] == [Withdrawal.Status.COMPLETED]
    withdrawal.refresh_from_db()
    assert withdrawal.attempted_hashes == [paid.transaction_hash]
    assert proxy.count("POST", "/transactions") == sent_before + 1
    assert SandboxPayment.objects.filter(to_account=outside.public_key, asset_code="USDC").count() == 1
    assert chain.usdc(outside.public_key) == Decimal("20")


class TrustlessWorkProxy(ThreadingHTTPServer):
    """Forwards to the sandbox Trustless Work; holds the answer to the first request matching a
    registered path (the build is done upstream, its answer has not reached us yet)."""

    daemon_threads = True

    def __init__(self, upstream: str):
        super().__init__(("127.0.0.1", 0), _TrustlessWorkHandler)
        self.upstream = upstream
        self.holds: dict[str, tuple[threading.Event, threading.Event]] = {}
        self.guard = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def hold_answer(self, path_prefix: str) -> tuple[threading.Event, threading.Event]:
        events = (threading.Event(), threading.Event())
        self.holds[path_prefix] = events
        return events


class _TrustlessWorkHandler(BaseHTTPRequestHandler):
    server: TrustlessWorkProxy

    def log_message(self, *args):
        pass

    def _forward(self, method: str):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name: self.headers[name] for name in ("Content-Type", "x-api-key") if self.headers.get(name)}
        upstream = requests.request(method, self.server.upstream + self.path, data=body, headers=headers, timeout=10)
        with self.server.guard:
            held = next((p for p in self.server.holds if self.path.startswith(p)), None)
            events = self.server.holds.pop(held) if held else None
        if events:
            reached, release = events
            reached.set()
            release.wait(HOLD_LIMIT)
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
def trustless_work_proxy(chain, live_server, settings):  # noqa: F811
    server = TrustlessWorkProxy(live_server.url + "/sandbox/trustless-work")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.TRUSTLESS_WORK_API_URL = server.url
    settings.TRUSTLESS_WORK_TIMEOUT_SECONDS = HOLD_LIMIT + 5  # a held answer is slow, not lost
    settings.OFFERHUB_PLATFORM_FEE_PERCENT = Decimal("5")
    yield server
    for _, release in list(server.holds.values()):
        release.set()
    server.shutdown()
    server.server_close()


def platform_payment(chain, escrow: Escrow) -> object:  # noqa: F811
    """A transaction signed by the escrow's platform signer: another escrow's call, or one sent
    outside OfferHub."""
    platform = platform_signer(escrow.roles["releaseSigner"])
    outsider = chain.outside_account(trustline=False)
    tx = (
        TransactionBuilder(horizon().load_account(platform.public_key), chain.passphrase, base_fee=100)
        .append_payment_op(outsider.public_key, Asset.native(), "1")
        .set_timeout(300)
        .build()
    )
    tx.sign(platform.keypair())
    transaction_submit(tx)
    return tx


def inner(envelope):
    """The signer's own transaction in a signed envelope (the treasury fee-bumps a pool signer's)."""
    if isinstance(envelope, FeeBumpTransactionEnvelope):
        return envelope.transaction.inner_transaction_envelope
    return envelope


def deploy_with_answer_held(buyer, seller, trustless_work: TrustlessWorkProxy, meanwhile) -> EscrowStep:
    """Open an order's escrow in a worker (its platform signer deploys it); once Trustless Work
    has built the deploy and before its answer arrives, run `meanwhile(escrow)`."""
    hold_reserve(user=buyer, reference="ord_lock", amount=10 * USD)
    reached, release = trustless_work.hold_answer("/deployer/")

    def open_escrow():
        order = "ord_lock"
        return escrow_open(
            engagement_id=order, buyer=buyer, seller=seller, amount=10 * USD, title="Logo", hold_reference=order
        ).pk

    opened: list[int] = []
    worker = in_thread(open_escrow, results=opened)
    assert reached.wait(HOLD_LIMIT)
    escrow = Escrow.objects.get(engagement_id="ord_lock")
    meanwhile(escrow)
    release.set()
    worker.join(HOLD_LIMIT)
    assert opened == [escrow.pk]
    escrow.refresh_from_db()
    deploy = escrow.steps.get(action=EscrowStep.Action.DEPLOY)
    assert (escrow.status, deploy.status) == (Escrow.Status.CREATED, EscrowStep.Status.CONFIRMED)
    assert escrow.contract_id and SandboxEscrowCall.objects.filter(applied_at__isnull=False).count() == 1
    return deploy


def test_the_signers_lock_is_free_while_trustless_work_builds_and_a_used_sequence_is_renumbered(
    chain,  # noqa: F811
    funded_user,  # noqa: F811
    trustless_work_proxy,
):
    sent = []

    def meanwhile(escrow):
        assert claim_result(escrow_lock_name(escrow.pk)) == "busy"  # the drive holds its escrow's lock
        # Another transaction of the same signer takes its submission lock at once, and
        # uses the sequence number the deploy was built with.
        with account_submission_lock(escrow.roles["releaseSigner"], timeout=BRIEF):
            sent.append(platform_payment(chain, escrow))

    deploy = deploy_with_answer_held(funded_user("30.00"), funded_user("0"), trustless_work_proxy, meanwhile)
    assert len(deploy.attempted_hashes) == 1  # signed once: no tx_bad_seq, no rebuild
    signed = inner(TransactionBuilder.from_xdr(deploy.signed_xdr, chain.passphrase))
    assert signed.transaction.sequence == sent[0].transaction.sequence + 1  # renumbered after the payment's
    handed_out = SandboxEscrowCall.objects.get(action="deploy-single-release")
    assert handed_out.tx_hash != signed.hash_hex() and handed_out.applied_at is not None


def test_a_transaction_sent_outside_the_lock_meanwhile_costs_one_rebuild_never_a_second_deploy(
    chain,  # noqa: F811
    funded_user,  # noqa: F811
    trustless_work_proxy,
):
    sent = []
    # Sent outside OfferHub's locks (another tool using the platform key): the lock's claims say
    # nothing about it, so the deploy goes out with its old number and gets tx_bad_seq.
    deploy = deploy_with_answer_held(
        funded_user("30.00"),
        funded_user("0"),
        trustless_work_proxy,
        lambda escrow: sent.append(platform_payment(chain, escrow)),
    )
    assert len(deploy.attempted_hashes) == 2  # refused unapplied, then built and signed anew
    signed = inner(TransactionBuilder.from_xdr(deploy.signed_xdr, chain.passphrase))
    assert signed.transaction.sequence == sent[0].transaction.sequence + 1
    assert SandboxEscrowCall.objects.filter(action="deploy-single-release").count() == 2


def test_a_stalled_escrow_drive_cannot_fail_a_step_after_a_takeover(chain, funded_user, monkeypatch):  # noqa: F811
    """A drive that stalled past its escrow lease judged the step on what it saw then: the drive
    that took over may have landed it since. Its refusal (a 400 from a build the chain has moved
    past) must not fail the step, or the ledger would keep holding what the chain paid."""
    from escrow import runner
    from escrow.tasks import escrow_drive_task

    monkeypatch.setattr(escrow_drive_task, "delay", lambda pk: None)  # the step stays open for the test
    buyer, seller = funded_user("30.00"), funded_user("0")
    hold_reserve(user=buyer, reference="ord_stall", amount=10 * USD)
    escrow = escrow_open(
        engagement_id="ord_stall", buyer=buyer, seller=seller, amount=10 * USD, title="Logo", hold_reference="ord_stall"
    )
    step = escrow.steps.get()
    with lease_lock(escrow_lock_name(escrow.pk), timeout=1):
        expire(escrow_lock_name(escrow.pk))
        assert in_another_thread(claim_result, escrow_lock_name(escrow.pk)) == "claimed #2"
        with pytest.raises(LeaseLost):
            runner._fail(step, code="ESCROW_ALREADY_RELEASED", message="the contract refused the call")
    step.refresh_from_db()
    assert (step.status, step.error_code) == (EscrowStep.Status.PENDING, "")
    assert Escrow.objects.get(pk=escrow.pk).status == escrow.status

    # The drive that holds the lease does fail it.
    with lease_lock(escrow_lock_name(escrow.pk), timeout=1):
        runner._fail(step, code="ESCROW_ALREADY_RELEASED", message="the contract refused the call")
    assert EscrowStep.objects.get(pk=step.pk).status == EscrowStep.Status.FAILED
