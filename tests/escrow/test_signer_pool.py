"""The platform's escrow signers: a pool of accounts, one named per escrow, so that the orders'
deploys, releases and resolutions do not all queue on one sequence number. Over HTTP against
the sandbox (Horizon and Trustless Work), with the real Redis broker where a drive gives its
worker back."""

import ast
import contextlib
import io
import json
import threading
from datetime import datetime, timedelta

import pytest
import redis
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings as django_settings
from django.utils import timezone
from stellar_sdk import FeeBumpTransactionEnvelope, Keypair, TransactionBuilder

from escrow.client import TrustlessWorkClient
from escrow.models import Escrow, EscrowStep
from escrow.runner import escrow_drive, escrows_due_claim
from escrow.services import escrow_dispute, escrow_milestone_mark, escrow_open, escrow_release, escrow_resolve
from escrow.tasks import escrow_drive_task
from offerhub.celery import app as celery_app
from offerhub.leases import job_lease_release, lease_claim
from offerhub.models import JobLease
from payments.crypto import secret_decrypt, secret_encrypt
from payments.ledger import hold_reserve
from payments.models import PlatformAccount, PlatformSigner
from payments.stellar import StellarError, account_load, usdc_balance
from payments.wallets import platform_bootstrap, platform_escrow_signer_pick
from payments.withdrawals import submission_lock_name
from sandbox.models import SandboxEscrowCall, SandboxFault
from tests.escrow.test_lifecycle import USD, ledger_equals_chain, open_funded
from tests.offerhub.test_lease_locks import _TrustlessWorkHandler, trustless_work_proxy  # noqa: F401  (fixture)
from tests.offerhub.test_single_flight_jobs import HOLD_LIMIT, drives_queued, in_thread, time_passes

pytestmark = pytest.mark.django_db(transaction=True)
Action = EscrowStep.Action


def pool() -> list[str]:
    return list(PlatformSigner.objects.order_by("pk").values_list("public_key", flat=True))


def treasury() -> str:
    return PlatformAccount.objects.get().public_key


def signed_by(step: EscrowStep) -> tuple[str, str | None]:
    """(the source of the step's own transaction, who paid its fee if it was fee-bumped)."""
    envelope = TransactionBuilder.from_xdr(step.signed_xdr, django_settings.STELLAR_NETWORK_PASSPHRASE)
    if isinstance(envelope, FeeBumpTransactionEnvelope):
        inner = envelope.transaction.inner_transaction_envelope.transaction
        return inner.source.account_id, envelope.transaction.fee_source.account_id
    return envelope.transaction.source.account_id, None


def test_the_bootstrap_creates_the_pool_once_and_grows_it_never_deleting(chain, settings):
    first = pool()
    assert len(first) == settings.OFFERHUB_PLATFORM_SIGNERS == 4 and treasury() not in first
    for signer in PlatformSigner.objects.all():
        on_chain = account_load(signer.public_key)
        assert on_chain is not None and usdc_balance(on_chain) is None  # XLM only: never receives money
        # Encrypted at rest like the platform's key, and the key of that address.
        assert signer.public_key not in signer.encrypted_secret
        assert Keypair.from_secret(secret_decrypt(signer.encrypted_secret)).public_key == signer.public_key

    platform_bootstrap()  # again: nothing new
    assert pool() == first

    settings.OFFERHUB_PLATFORM_SIGNERS = 6
    platform_bootstrap()
    grown = pool()
    assert len(grown) == 6 and grown[:4] == first and all(account_load(address) for address in grown)

    # Lowered: none deleted (escrows name them); only the first two get new escrows.
    settings.OFFERHUB_PLATFORM_SIGNERS = 2
    platform_bootstrap()
    assert pool() == grown
    assert {platform_escrow_signer_pick()[1] for _ in range(6)} == set(first[:2])


def test_concurrent_creates_take_the_signers_in_turn_without_waiting_for_each_other(chain):
    together = threading.Barrier(8)
    picked: list[tuple[str, str]] = []

    def pick():
        together.wait(HOLD_LIMIT)
        return platform_escrow_signer_pick()

    for thread in [in_thread(pick, results=picked) for _ in range(8)]:
        thread.join(HOLD_LIMIT)
    assert {fee_address for fee_address, _ in picked} == {treasury()}
    signers = [signer for _, signer in picked]
    assert sorted(signers) == sorted(pool() * 2)  # eight creates at once: each signer twice


def test_with_no_signer_set_up_the_treasury_signs_as_before(chain, settings):
    settings.OFFERHUB_PLATFORM_SIGNERS = 0
    assert platform_escrow_signer_pick() == (treasury(), treasury())
    settings.OFFERHUB_PLATFORM_SIGNERS = 4
    PlatformSigner.objects.all().delete()  # a database not bootstrapped since the pool came
    assert platform_escrow_signer_pick() == (treasury(), treasury())


def test_escrows_are_spread_over_the_signers_and_each_signs_its_own_release(chain, funded_user, trustless_work):
    buyer, seller = funded_user("100.00"), funded_user("0")
    escrows = [open_funded(buyer, seller, 10 * USD, order=f"ord_spread_{n}") for n in range(4)]
    signers = [escrow.roles["releaseSigner"] for escrow in escrows]
    assert sorted(signers) == sorted(pool())  # four orders in a row: four signers
    for escrow in escrows:
        assert escrow.roles["disputeResolver"] == escrow.roles["releaseSigner"]
        assert escrow.roles["platformAddress"] == treasury()  # the fee still goes to the treasury
        deploy = escrow.steps.get(action=Action.DEPLOY)
        assert deploy.signer == escrow.roles["releaseSigner"]
        # The signer signed it; the treasury paid its fee (the signer holds its reserve only).
        assert signed_by(deploy) == (deploy.signer, treasury())

    escrow = escrows[0]
    escrow_milestone_mark(escrow=escrow, index=0, evidence="https://example.com/logo.png")
    escrow_release(escrow=escrow)
    escrow.refresh_from_db()
    assert escrow.status == Escrow.Status.RELEASED
    release = escrow.steps.get(action=Action.RELEASE)
    assert release.status == EscrowStep.Status.CONFIRMED
    assert signed_by(release) == (escrow.roles["releaseSigner"], treasury())
    applied = SandboxEscrowCall.objects.get(action="release-funds", applied_at__isnull=False)
    assert applied.signer == escrow.roles["releaseSigner"]
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)  # the treasury got the platform fee


def test_a_resolution_is_signed_by_the_escrows_dispute_resolver(chain, funded_user, trustless_work):
    buyer, seller = funded_user("40.00"), funded_user("0")
    escrow = open_funded(buyer, seller, 40 * USD, order="ord_pool_dispute")
    escrow_dispute(escrow=escrow, opened_by="buyer")
    escrow_resolve(escrow=escrow, seller_amount=15 * USD, buyer_amount=25 * USD)
    escrow.refresh_from_db()
    resolve = escrow.steps.get(action=Action.RESOLVE)
    assert resolve.status == EscrowStep.Status.CONFIRMED and escrow.balance == 0
    assert resolve.signer == escrow.roles["disputeResolver"] in pool()
    assert signed_by(resolve) == (resolve.signer, treasury())
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)


def test_an_escrow_from_before_the_pool_naming_the_treasury_still_releases(
    chain, funded_user, trustless_work, settings
):
    buyer, seller = funded_user("20.00"), funded_user("0")
    settings.OFFERHUB_PLATFORM_SIGNERS = 0  # opened as before the pool: the treasury in every platform role
    escrow = open_funded(buyer, seller, 10 * USD, order="ord_old")
    assert {escrow.roles[role] for role in ("platformAddress", "releaseSigner", "disputeResolver")} == {treasury()}
    settings.OFFERHUB_PLATFORM_SIGNERS = 4
    assert len(pool()) == 4
    escrow_release(escrow=escrow)
    escrow.refresh_from_db()
    assert escrow.status == Escrow.Status.RELEASED
    release = escrow.steps.get(action=Action.RELEASE)
    assert signed_by(release) == (treasury(), None)  # signed by the treasury, which pays its own fee
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)


def test_two_escrows_with_different_signers_submit_at_the_same_time(
    chain,
    funded_user,
    trustless_work_proxy,  # noqa: F811
):
    buyer, seller = funded_user("40.00"), funded_user("0")
    opened: list[int] = []

    def open_escrow(order: str):
        hold_reserve(user=buyer, reference=order, amount=10 * USD)
        return escrow_open(
            engagement_id=order, buyer=buyer, seller=seller, amount=10 * USD, title="Logo", hold_reference=order
        ).pk

    # Each deploy's answer is held once it is sent: its drive is inside its signer's lock.
    holds = []
    for order in ("ord_side_a", "ord_side_b"):
        reached, release = trustless_work_proxy.hold_answer("/helper/send-transaction")
        holds.append((in_thread(open_escrow, order, results=opened), release))
        assert reached.wait(HOLD_LIMIT), f"{order}'s deploy never reached the network"
    signers = [Escrow.objects.get(engagement_id=order).roles["releaseSigner"] for order in ("ord_side_a", "ord_side_b")]
    assert signers[0] != signers[1]
    held = JobLease.objects.filter(
        name__in=[submission_lock_name(signer) for signer in signers], holder__gt="", expires_at__gt=timezone.now()
    )
    assert held.count() == 2  # both signers' submission leases held at once
    for worker, release in holds:
        release.set()
        worker.join(HOLD_LIMIT)
    assert len(opened) == 2
    assert all(e.status == Escrow.Status.CREATED and e.contract_id for e in Escrow.objects.filter(pk__in=opened))


@contextlib.contextmanager
def broker_only():
    """From here on tasks go to the real broker (Redis), where nothing consumes them."""
    if not django_settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.skip("needs the Redis broker (REDIS_URL)")
    queue = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    queue.delete("celery")
    celery_app.conf.task_always_eager = False
    try:
        yield queue
    finally:
        celery_app.conf.task_always_eager = True
        queue.delete("celery")


def busy_elsewhere(signer: str, ttl=timedelta(minutes=2)) -> str:
    """Another run (another escrow's drive) holds the signer's submission lock."""
    holder = "another-worker:1:1:x"
    assert lease_claim(name=submission_lock_name(signer), holder=holder, ttl=ttl)
    return holder


def test_a_workers_drive_gives_its_worker_back_while_its_signer_is_busy_and_loses_nothing(
    chain, funded_user, trustless_work
):
    buyer, seller = funded_user("20.00"), funded_user("0")
    hold_reserve(user=buyer, reference="ord_give_back", amount=10 * USD)
    with broker_only() as queue:
        escrow = escrow_open(
            engagement_id="ord_give_back",
            buyer=buyer,
            seller=seller,
            amount=10 * USD,
            title="Logo",
            hold_reference="ord_give_back",
        )
        assert drives_queued(queue) == [escrow.pk]
        queue.delete("celery")  # a worker took the message: it runs the drive below, as the worker would
        signer = escrow.roles["releaseSigner"]
        holder = busy_elsewhere(signer)

        assert escrow_drive_task(escrow.pk) == "signer-busy"
        deploy = escrow.steps.get()
        # Untouched: not built (the lock was seen held before asking Trustless Work), not signed,
        # no error, no back-off; and queued again, after a short countdown.
        assert (deploy.status, deploy.attempts, deploy.error_code) == (EscrowStep.Status.PENDING, 0, "")
        assert not SandboxEscrowCall.objects.exists()
        assert drives_queued(queue) == [escrow.pk]
        (message,) = [json.loads(raw) for raw in queue.lrange("celery", 0, -1)]
        assert message["headers"]["eta"] is not None
        # Still claimed for a running drive: the sweeper queues no second one meanwhile, and
        # finds the step again if the queued drive were lost.
        assert escrow.pk not in escrows_due_claim(limit=10, stale_after=timedelta(0))
        time_passes(timedelta(minutes=3))
        assert escrows_due_claim(limit=10, stale_after=timedelta(0), claim_for=timedelta(0)) == [escrow.pk]

        assert job_lease_release(name=submission_lock_name(signer), holder=holder)
        queue.delete("celery")
        assert escrow_drive_task(escrow.pk) == "done"  # the queued drive, run by a worker
        assert drives_queued(queue) == []
    deploy.refresh_from_db()
    escrow.refresh_from_db()
    assert deploy.status == EscrowStep.Status.CONFIRMED and deploy.attempts == 1
    assert escrow.status == Escrow.Status.CREATED and escrow.contract_id


def test_a_workers_drive_that_finds_its_escrow_driven_gives_its_worker_back_and_comes_again(
    chain, funded_user, trustless_work
):
    """Another drive of the same escrow is running (it runs what was queued meanwhile when it
    reads for its next step): a worker's drive waits a moment, then gives its worker back and is
    queued again instead of holding it idle; run eagerly it would wait as before."""
    buyer, seller = funded_user("20.00"), funded_user("0")
    hold_reserve(user=buyer, reference="ord_escrow_busy", amount=10 * USD)
    with broker_only() as queue:
        escrow = escrow_open(
            engagement_id="ord_escrow_busy",
            buyer=buyer,
            seller=seller,
            amount=10 * USD,
            title="Logo",
            hold_reference="ord_escrow_busy",
        )
        queue.delete("celery")
        holder = "another-worker:2:2:y"
        assert lease_claim(name=f"escrow:{escrow.pk}", holder=holder, ttl=timedelta(minutes=2))

        assert escrow_drive_task(escrow.pk) == "busy"
        give_backs, countdown = requeued(queue)
        assert give_backs == 1 and 0 < countdown <= 1.5
        deploy = escrow.steps.get()
        assert (deploy.status, deploy.attempts, deploy.error_code) == (EscrowStep.Status.PENDING, 0, "")
        assert escrow.pk not in escrows_due_claim(limit=10, stale_after=timedelta(0))  # still claimed

        assert job_lease_release(name=f"escrow:{escrow.pk}", holder=holder)
        assert escrow_drive_task(escrow.pk, give_backs=give_backs) == "done"  # the queued drive
        assert drives_queued(queue) == []
    deploy.refresh_from_db()
    assert deploy.status == EscrowStep.Status.CONFIRMED and deploy.attempts == 1


def requeued(queue) -> tuple[int, float]:
    """The one drive queued again: (its give-backs in a row, its countdown in seconds, about)."""
    (message,) = [json.loads(raw) for raw in queue.lrange("celery", 0, -1)]
    queue.delete("celery")
    eta = datetime.fromisoformat(message["headers"]["eta"])
    return ast.literal_eval(message["headers"]["kwargsrepr"])["give_backs"], (eta - timezone.now()).total_seconds()


def test_a_drive_given_back_again_and_again_comes_back_later_each_time(chain, funded_user, trustless_work):
    buyer, seller = funded_user("20.00"), funded_user("0")
    hold_reserve(user=buyer, reference="ord_backoff", amount=10 * USD)
    with broker_only() as queue:
        escrow = escrow_open(
            engagement_id="ord_backoff",
            buyer=buyer,
            seller=seller,
            amount=10 * USD,
            title="Logo",
            hold_reference="ord_backoff",
        )
        queue.delete("celery")
        busy_elsewhere(escrow.roles["releaseSigner"])
        # A message queued before the count existed carries none: its drive counts from there.
        assert escrow_drive_task(escrow.pk) == "signer-busy"  # as a worker runs it
        give_backs, countdown = requeued(queue)
        assert give_backs == 1 and 0 < countdown <= 1.5
        ceilings = []
        for _ in range(6):  # the worker runs each queued drive; the signer is still busy
            assert escrow_drive_task(escrow.pk, give_backs=give_backs) == "signer-busy"
            previous = give_backs
            give_backs, countdown = requeued(queue)
            assert give_backs == previous + 1
            ceilings.append(min(2 ** (give_backs - 1), 10))
            assert ceilings[-1] / 2 - 0.5 <= countdown <= ceilings[-1] + 0.5  # jittered within its half
        assert ceilings == [2, 4, 8, 10, 10, 10]
    deploy = escrow.steps.get()
    assert (deploy.status, deploy.attempts, deploy.error_code) == (EscrowStep.Status.PENDING, 0, "")


def test_a_signer_taken_while_the_call_is_built_gives_the_worker_back_unsigned(
    chain,
    funded_user,
    trustless_work_proxy,  # noqa: F811
):
    buyer, seller = funded_user("20.00"), funded_user("0")
    hold_reserve(user=buyer, reference="ord_taken", amount=10 * USD)
    with broker_only() as queue:
        escrow = escrow_open(
            engagement_id="ord_taken",
            buyer=buyer,
            seller=seller,
            amount=10 * USD,
            title="Logo",
            hold_reference="ord_taken",
        )
        queue.delete("celery")
        reached, release = trustless_work_proxy.hold_answer("/deployer/")
        outcome: list[str] = []
        worker = in_thread(escrow_drive_task, escrow.pk, results=outcome)
        assert reached.wait(HOLD_LIMIT)  # Trustless Work is building the deploy: the signer's lock is free
        busy_elsewhere(escrow.roles["releaseSigner"])
        release.set()
        worker.join(HOLD_LIMIT)
        assert outcome == ["signer-busy"]
        assert drives_queued(queue) == [escrow.pk]
    deploy = escrow.steps.get()
    assert (deploy.status, deploy.attempts, deploy.signed_xdr) == (EscrowStep.Status.PENDING, 0, "")
    assert SandboxEscrowCall.objects.get().applied_at is None  # built, never signed nor sent


def test_a_signer_taken_for_one_submission_while_the_call_is_built_is_waited_for_not_given_back(
    chain,
    funded_user,
    trustless_work_proxy,  # noqa: F811
):
    """The build is paid for: a submission of another escrow holds the signer about a ledger."""
    buyer, seller = funded_user("20.00"), funded_user("0")
    hold_reserve(user=buyer, reference="ord_brief", amount=10 * USD)
    with broker_only() as queue:
        escrow = escrow_open(
            engagement_id="ord_brief",
            buyer=buyer,
            seller=seller,
            amount=10 * USD,
            title="Logo",
            hold_reference="ord_brief",
        )
        queue.delete("celery")
        reached, release = trustless_work_proxy.hold_answer("/deployer/")
        outcome: list[str] = []
        worker = in_thread(escrow_drive_task, escrow.pk, results=outcome)
        assert reached.wait(HOLD_LIMIT)
        busy_elsewhere(escrow.roles["releaseSigner"], ttl=timedelta(seconds=3))  # about one submission
        release.set()
        worker.join(HOLD_LIMIT)
        assert outcome == ["done"]
        assert drives_queued(queue) == []
    deploy = escrow.steps.get()
    assert (deploy.status, deploy.attempts) == (EscrowStep.Status.CONFIRMED, 1)
    assert SandboxEscrowCall.objects.count() == 1  # built once


def test_run_eagerly_a_drive_waits_for_its_signer_instead_of_queuing_itself_again(chain, funded_user, trustless_work):
    """Embedded mode and the tests run tasks in-process: queuing again would recurse at once."""
    buyer, seller = funded_user("20.00"), funded_user("0")
    hold_reserve(user=buyer, reference="ord_eager", amount=10 * USD)
    with broker_only() as queue:
        escrow = escrow_open(
            engagement_id="ord_eager",
            buyer=buyer,
            seller=seller,
            amount=10 * USD,
            title="Logo",
            hold_reference="ord_eager",
        )
        queue.delete("celery")
    # Held by a run that stopped renewing: the eager drive waits until its lease expires.
    busy_elsewhere(escrow.roles["releaseSigner"], ttl=timedelta(seconds=1))
    assert escrow_drive_task.delay(escrow.pk).result == "done"  # run in-process, not queued again
    assert escrow.steps.get().status == EscrowStep.Status.CONFIRMED


def test_a_signer_whose_funding_failed_gets_no_escrow_until_a_bootstrap_puts_it_on_chain(
    chain, funded_user, trustless_work, settings
):
    funded = pool()
    # Raised on a live site; friendbot fails for the fifth signer: its row is saved, its account is not.
    settings.OFFERHUB_PLATFORM_SIGNERS = 6
    SandboxFault.objects.create(service="horizon", path_contains="friendbot", status_code=503, remaining=1)
    with pytest.raises(StellarError):
        platform_bootstrap()
    unfunded = [address for address in pool() if address not in funded]
    assert len(unfunded) == 2 and all(account_load(address) is None for address in unfunded)
    assert {platform_escrow_signer_pick()[1] for _ in range(12)} == set(funded)

    buyer, seller = funded_user("60.00"), funded_user("0")
    escrows = [open_funded(buyer, seller, 10 * USD, order=f"ord_half_{n}") for n in range(5)]
    assert all(escrow.roles["releaseSigner"] in funded for escrow in escrows)  # each deployed and funded

    platform_bootstrap()  # again, friendbot back: the two join the pool
    assert all(account_load(address) for address in unfunded)
    assert PlatformSigner.objects.filter(funded_at__isnull=True).count() == 0
    assert {platform_escrow_signer_pick()[1] for _ in range(12)} == set(pool())


def test_signers_from_before_funded_at_stay_out_until_the_bootstrap_verifies_them(chain, settings):
    PlatformSigner.objects.update(funded_at=None)  # as payments 0011 leaves existing rows
    assert platform_escrow_signer_pick() == (treasury(), treasury())  # the treasury signs meanwhile
    platform_bootstrap()
    assert PlatformSigner.objects.filter(funded_at__isnull=True).count() == 0
    assert {platform_escrow_signer_pick()[1] for _ in range(8)} == set(pool())


def test_a_deploy_for_a_signer_not_on_chain_waits_for_the_platform_instead_of_failing(
    chain, funded_user, trustless_work, settings
):
    buyer, seller = funded_user("20.00"), funded_user("0")
    # A signer saved but never funded, handed to an order as the pick did before funded_at.
    keypair = Keypair.random()
    ciphertext, version = secret_encrypt(keypair.secret)
    PlatformSigner.objects.update(funded_at=None)
    PlatformSigner.objects.create(
        public_key=keypair.public_key, encrypted_secret=ciphertext, key_version=version, funded_at=timezone.now()
    )
    settings.OFFERHUB_PLATFORM_SIGNERS = 5
    hold_reserve(user=buyer, reference="ord_unfunded", amount=10 * USD)
    escrow = escrow_open(
        engagement_id="ord_unfunded",
        buyer=buyer,
        seller=seller,
        amount=10 * USD,
        title="Logo",
        hold_reference="ord_unfunded",
    )
    assert escrow.roles["releaseSigner"] == keypair.public_key
    deploy = escrow.steps.get()
    assert (deploy.status, deploy.error_code) == (EscrowStep.Status.PENDING, "PLATFORM_NOT_READY")
    assert Escrow.objects.get(pk=escrow.pk).status == Escrow.Status.CREATING

    platform_bootstrap()  # funds it
    assert account_load(keypair.public_key) is not None
    assert escrow_drive(escrow_pk=escrow.pk) == "done"
    deploy.refresh_from_db()
    escrow.refresh_from_db()
    assert deploy.status == EscrowStep.Status.CONFIRMED and escrow.status == Escrow.Status.CREATED
    assert signed_by(deploy) == (keypair.public_key, treasury())


class _LosesThenLandsHandler(_TrustlessWorkHandler):
    """send-transaction: after `passes` more, one is lost on its way (503, never forwarded: the
    network has it, not applied yet); with `lands_first` (Horizon's URL), the next one's
    envelope reaches the network from elsewhere just before it is forwarded (the lost copy lands)."""

    def _forward(self, method: str):
        server = self.server
        if method != "POST" or not self.path.startswith("/helper/send-transaction"):
            return super()._forward(method)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.rfile = io.BytesIO(body)
        if server.passes is not None:
            if server.passes == 0:
                server.passes = None
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            server.passes -= 1
        if server.lands_first:
            horizon_url, server.lands_first = server.lands_first, None
            landed = requests.post(
                f"{horizon_url}/transactions", data={"tx": json.loads(body)["signedXdr"]}, timeout=10
            )
            assert landed.ok, landed.text
        return super()._forward(method)


def test_a_fee_bumped_release_resent_after_it_landed_is_looked_up_not_failed(
    chain,
    funded_user,
    trustless_work_proxy,  # noqa: F811
    settings,
):
    buyer, seller = funded_user("20.00"), funded_user("0")
    escrow = open_funded(buyer, seller, 20 * USD, order="ord_resent")
    escrow_milestone_mark(escrow=escrow, index=0, evidence="https://example.com/logo.png")
    # The approval goes through; the release is signed and sent, its answer lost (the network
    # has it, it has not landed yet).
    trustless_work_proxy.RequestHandlerClass = _LosesThenLandsHandler
    trustless_work_proxy.passes, trustless_work_proxy.lands_first = 1, None
    escrow_release(escrow=escrow)
    release = escrow.steps.get(action=Action.RELEASE)
    assert release.status == EscrowStep.Status.SUBMITTED
    assert signed_by(release) == (escrow.roles["releaseSigner"], treasury())  # fee-bumped
    assert not SandboxEscrowCall.objects.filter(action="release-funds", applied_at__isnull=False).exists()

    # The next run finds nothing yet and resends it; it lands just before the resend, which core
    # refuses (inner tx_bad_seq: Horizon has not ingested the ledger yet).
    settings.SANDBOX_HORIZON_INGEST_LAG = True
    trustless_work_proxy.lands_first = chain.url
    assert escrow_drive(escrow_pk=escrow.pk) == "pending"
    release.refresh_from_db()
    assert (release.status, release.error_code) == (EscrowStep.Status.SUBMITTED, "RESENT_REFUSED")
    assert "tx_bad_seq" in release.error_message
    assert SandboxEscrowCall.objects.filter(action="release-funds", applied_at__isnull=False).count() == 1

    assert escrow_drive(escrow_pk=escrow.pk) == "done"  # looked up: it landed
    release.refresh_from_db()
    escrow.refresh_from_db()
    assert release.status == EscrowStep.Status.CONFIRMED and escrow.status == Escrow.Status.RELEASED
    assert len(release.attempted_hashes) == 1
    ledger_equals_chain(chain, TrustlessWorkClient(backoff=0.01), escrow, buyer, seller)


def derived_address(treasury_secret: str, index: int) -> str:
    """The documented derivation (docs/deployment.md), computed here independently."""
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"offerhub/platform-signer/v1", info=f"signer/{index}".encode()
    )
    return Keypair.from_raw_ed25519_seed(hkdf.derive(Keypair.from_secret(treasury_secret).raw_secret_key())).public_key


def test_with_the_treasury_imported_the_signers_are_derived_and_a_lost_pool_is_re_created(
    chain, funded_user, trustless_work, settings
):
    secret = secret_decrypt(PlatformAccount.objects.get().encrypted_secret)
    settings.OFFERHUB_PLATFORM_SECRET_KEY = secret  # as on mainnet: the treasury imported from the setting
    random_ones = pool()
    # Raised: the signers there stay as they are (random, valid); the new ones are derived.
    settings.OFFERHUB_PLATFORM_SIGNERS = 6
    platform_bootstrap()
    assert pool() == [*random_ones, derived_address(secret, 4), derived_address(secret, 5)]

    # A site started with the setting: every signer derived.
    PlatformSigner.objects.all().delete()
    settings.OFFERHUB_PLATFORM_SIGNERS = 4
    platform_bootstrap()
    derived = [derived_address(secret, index) for index in range(4)]
    assert pool() == derived
    buyer, seller = funded_user("20.00"), funded_user("0")
    escrow = open_funded(buyer, seller, 10 * USD, order="ord_derived")
    assert escrow.roles["releaseSigner"] in derived

    # The signers' encrypted keys are lost (a database rebuilt without them): the same setting
    # re-creates the same accounts, and the escrow naming one is still released.
    PlatformSigner.objects.all().delete()
    platform_bootstrap()
    assert pool() == derived
    escrow_release(escrow=escrow)
    escrow.refresh_from_db()
    assert escrow.status == Escrow.Status.RELEASED
    assert signed_by(escrow.steps.get(action=Action.RELEASE)) == (escrow.roles["releaseSigner"], treasury())
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)
