"""Escrow calls queued and settled with few statements, and their guarantees kept: a call
asked twice is one step, a refused one gets a fresh key, one drive per escrow per
transaction, the settle locks the step with its escrow and posts balanced entries once."""

import threading
import time

import pytest
from celery.signals import task_prerun
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from escrow.models import Escrow, EscrowStep
from escrow.runner import escrows_due_claim
from escrow.services import _EscrowDrive, _step_add, escrow_fees, escrow_release, step_settle
from payments.ledger import user_accounts
from tests.escrow.test_lifecycle import USD, ledger_equals_chain, open_funded
from tests.escrow.test_step_runner import applied
from tests.payments.test_ledger import assert_books_balance

pytestmark = pytest.mark.django_db(transaction=True)
Action = EscrowStep.Action


class Rollback(Exception):
    pass


def drives_registered() -> int:
    return sum(isinstance(func, _EscrowDrive) for _, func, _ in connection.run_on_commit)


def test_a_call_is_queued_in_one_statement_once_and_again_with_a_fresh_key_after_a_refusal(
    chain, funded_user, trustless_work
):
    buyer, seller = funded_user("20.00"), funded_user("0")
    escrow = open_funded(buyer, seller, 10 * USD, order="ord_queue")
    signer = escrow.roles["approver"]
    with pytest.raises(Rollback), transaction.atomic():  # rolled back: no drive runs these steps
        with CaptureQueriesContext(connection) as queries:
            first = _step_add(escrow, action=Action.APPROVE, stem="approve:0", signer=signer, index=0)
        assert len(queries) == 1, [q["sql"] for q in queries]
        assert first.key == f"{escrow.public_id}:approve:0" and first.pk
        # Claimed in the INSERT for the drive queued after commit: the sweeper leaves it alone.
        assert first.next_attempt_at > timezone.now()
        assert escrow.pk not in escrows_due_claim(limit=10, stale_after=timezone.timedelta(0))

        again = _step_add(escrow, action=Action.APPROVE, stem="approve:0", signer=signer, index=0)
        assert again.pk == first.pk  # asking twice changes nothing
        for tried in (1, 2):
            EscrowStep.objects.filter(escrow=escrow, action=Action.APPROVE).update(status=EscrowStep.Status.FAILED)
            retry = _step_add(escrow, action=Action.APPROVE, stem="approve:0", signer=signer, index=0)
            assert retry.key == f"{escrow.public_id}:approve:0:{tried}"
        assert EscrowStep.objects.filter(escrow=escrow, action=Action.APPROVE).count() == 3
        assert drives_registered() == 1  # four calls, one drive after commit
        raise Rollback
    assert not EscrowStep.objects.filter(escrow=escrow, action=Action.APPROVE).exists()


def test_a_release_queues_approval_and_release_for_one_drive_that_pays_once(chain, funded_user, trustless_work):
    buyer, seller = funded_user("20.00"), funded_user("0")
    amount = 10 * USD
    escrow = open_funded(buyer, seller, amount, order="ord_release_statements")
    drives = []

    def on_task(sender=None, **kwargs):
        drives.append(sender.name)

    task_prerun.connect(on_task)
    try:
        with CaptureQueriesContext(connection) as queries, transaction.atomic():
            with CaptureQueriesContext(connection) as request:
                escrow_release(escrow=escrow)
            assert drives_registered() == 1
            # committed: the one drive ran (tasks run eagerly here)
    finally:
        task_prerun.disconnect(on_task)
    sql = [q["sql"] for q in queries]

    escrow.refresh_from_db()
    assert escrow.status == Escrow.Status.RELEASED
    assert drives.count("escrow.tasks.escrow_drive_task") == 1
    assert applied(Action.APPROVE) == 1 and applied(Action.RELEASE) == 1  # each submitted once
    fees = escrow_fees(amount=amount, platform_fee_percent=escrow.platform_fee_percent)
    assert user_accounts(seller)[0].balance == fees.net
    assert_books_balance()
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)

    # The request: no savepoint, each call queued in one statement.
    assert not [s for s in request.captured_queries if "SAVEPOINT" in s["sql"]]
    assert sum(s["sql"].lstrip().startswith("WITH family AS") for s in request.captured_queries) == 2
    assert len(request) <= 6, [s["sql"][:90] for s in request.captured_queries]
    # The drive: each settle locks its step and its escrow in one query, escrow first.
    locks = [s for s in sql if 'FOR UPDATE OF "escrow_escrow", "escrow_escrowstep"' in s]
    assert len(locks) == 2
    # It reads its steps: the first in the UPDATE that claims them, made by the statement that
    # takes the escrow's lease; the release once the approval settled (whose settle saw it open),
    # and nothing after the release (whose settle saw none). The signer's lock is asked about in
    # those reads, not before each build.
    escrow_claims = [s for s in sql if "INSERT INTO offerhub_joblease" in s and "'escrow:" in s]
    assert len(escrow_claims) == 1 and "UPDATE escrow_escrowstep AS step SET next_attempt_at" in escrow_claims[0]
    assert not [s for s in sql if s.startswith("UPDATE escrow_escrowstep AS step")]
    reads = [s for s in sql if s.startswith('SELECT "escrow_escrowstep"') and s.endswith("LIMIT 1")]
    assert len(reads) == 1, reads
    assert not [s for s in sql if 'FROM "offerhub_joblease"' in s and '"held"' in s]
    # Each settle writes its rows (milestones, escrow, step) in one statement.
    drive = sql[len(request.captured_queries) :]
    assert not [s for s in drive if s.startswith(('UPDATE "escrow_escrow"', 'UPDATE "escrow_escrowmilestone"'))]
    assert len([s for s in sql if s.startswith('WITH u0 AS (UPDATE "escrow_escrowmilestone"')]) == 2
    # The payout's accounts are found and locked in one query; the request asked about dispute
    # calls in its read of the milestones.
    accounts = [s for s in drive if '"payments_ledgeraccount"."code" IN' in s]
    assert len(accounts) == 1 and accounts[0].endswith("FOR UPDATE"), accounts
    assert not [s for s in request.captured_queries if s["sql"].startswith('SELECT 1 AS "a" FROM "escrow_escrowstep"')]
    # Each SUBMITTED store fences both leases in its own statement.
    stores = [s for s in sql if s.startswith("\nWITH mine (name, holder, claims, ttl)")]
    assert len(stores) == 2 and not [s for s in sql if s.startswith('UPDATE "offerhub_joblease" SET "renewed_at"')]
    # The whole release (request, one drive of two steps, their settles, events): 57 when
    # written (74 before issue 13's cuts); a little room for a lease renewed on a slow run.
    assert len(sql) <= 60, len(sql)


def test_a_settle_waiting_for_the_escrow_lock_holds_no_lock_on_its_step(chain, funded_user, trustless_work):
    """The one locking query takes the escrow's row before the step's (the order every writer
    of an escrow's steps uses): while it waits for the escrow, the step is free."""
    buyer, seller = funded_user("20.00"), funded_user("0")
    escrow = open_funded(buyer, seller, 10 * USD, order="ord_lock_order")
    step = EscrowStep.objects.create(  # not through _step_add: no drive runs it
        escrow=escrow,
        key=f"{escrow.public_id}:approve:0",
        action=Action.APPROVE,
        milestone_index=0,
        signer=escrow.roles["approver"],
        status=EscrowStep.Status.SUBMITTED,
    )
    escrow_locked, release = threading.Event(), threading.Event()

    def hold_escrow():
        try:
            with transaction.atomic():
                Escrow.objects.select_for_update().get(pk=escrow.pk)
                escrow_locked.set()
                release.wait(30)
        finally:
            connection.close()

    def settle():
        try:
            step_settle(step=step)
        finally:
            connection.close()

    holder, settler = threading.Thread(target=hold_escrow), threading.Thread(target=settle)
    holder.start()
    assert escrow_locked.wait(30)
    settler.start()
    try:
        for _ in range(300):  # until the settle waits on a row lock (bounded)
            with connection.cursor() as cursor:
                cursor.execute(  # only the settle can wait for a lock here
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                )
                if cursor.fetchone()[0]:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("the settle never waited for the escrow's lock")
        with transaction.atomic():
            # Free: NOWAIT raises at once if the waiting settle had locked it.
            EscrowStep.objects.select_for_update(nowait=True).get(pk=step.pk)
    finally:
        release.set()
        holder.join(30)
        settler.join(30)
    step.refresh_from_db()
    assert step.status == EscrowStep.Status.CONFIRMED
    assert escrow.milestones.get(index=0).approved


def test_a_drive_task_that_finds_its_escrow_busy_claims_the_steps_once_it_has_the_lease(
    chain, funded_user, trustless_work, monkeypatch
):
    """The task's drive claims its steps in the statement that takes the escrow's lease; while
    another drive holds the lease that statement claims nothing, and the drive claims them (and
    runs them) once it got the lease."""
    from escrow.runner import escrow_drive, escrow_lock_name
    from escrow.services import DRIVE_CLAIM, escrow_open
    from escrow.tasks import escrow_drive_task
    from offerhub import locks
    from offerhub.locks import lease_lock
    from payments.ledger import hold_reserve

    monkeypatch.setattr(escrow_drive_task, "delay", lambda pk: None)  # the step stays open for the test
    buyer, seller = funded_user("20.00"), funded_user("0")
    hold_reserve(user=buyer, reference="ord_busy", amount=10 * USD)
    escrow = escrow_open(
        engagement_id="ord_busy", buyer=buyer, seller=seller, amount=10 * USD, title="Logo", hold_reference="ord_busy"
    )
    queued = escrow.steps.get()
    results, first_try = [], threading.Event()
    claim_with = locks.lease_claim_with

    def observed_claim_with(**kwargs):  # the real claim, observed: the test waits for it
        try:
            return claim_with(**kwargs)
        finally:
            first_try.set()

    monkeypatch.setattr(locks, "lease_claim_with", observed_claim_with)

    def drive():
        try:
            with CaptureQueriesContext(connection) as queries:
                results.append(escrow_drive(escrow_pk=escrow.pk, claim_for=DRIVE_CLAIM))
            results.append([q["sql"] for q in queries.captured_queries])
        finally:
            connection.close()

    with lease_lock(escrow_lock_name(escrow.pk), timeout=1):
        driver = threading.Thread(target=drive)
        driver.start()
        assert first_try.wait(30)  # its first try (the claim with the steps' claim) was refused
        assert EscrowStep.objects.get(pk=queued.pk).next_attempt_at == queued.next_attempt_at  # not claimed
    driver.join(60)
    assert results[0] == "done"
    sql = results[1]
    assert "UPDATE escrow_escrowstep AS step" in next(s for s in sql if "INSERT INTO offerhub_joblease" in s)
    assert [s for s in sql if s.startswith("UPDATE escrow_escrowstep AS step")]  # claimed once it held the lease
    assert EscrowStep.objects.get(pk=queued.pk).status == EscrowStep.Status.CONFIRMED


def test_a_settles_escrow_write_is_refused_when_its_state_changed_since_it_was_read(chain, funded_user, trustless_work):
    """What ConcurrentTransitionMixin's save checks, kept by the settle's deferred write: the
    escrow's row is written only while it has the state it was read with."""
    from django_fsm import ConcurrentTransition

    from escrow.services import _escrow_saved
    from offerhub.services import outbox_batched, outbox_row_update

    buyer, seller = funded_user("20.00"), funded_user("0")
    escrow = open_funded(buyer, seller, 10 * USD, order="ord_concurrent")
    read = Escrow.objects.get(pk=escrow.pk)
    read.title = "changed by the settle"
    Escrow.objects.filter(pk=escrow.pk).update(status=Escrow.Status.DISPUTED)  # meanwhile
    step_rows = EscrowStep.objects.filter(escrow=escrow)
    with pytest.raises(ConcurrentTransition), transaction.atomic(), outbox_batched():
        outbox_row_update(step_rows, {"error_code": "x"})
        outbox_row_update(*_escrow_saved(read, Escrow.Status.FUNDED), expect=1)
    assert Escrow.objects.get(pk=escrow.pk).title != "changed by the settle"
    assert not EscrowStep.objects.filter(escrow=escrow, error_code="x").exists()  # rolled back with it
    with transaction.atomic(), outbox_batched():
        read = Escrow.objects.get(pk=escrow.pk)
        read.title = "saved"
        outbox_row_update(*_escrow_saved(read, read.status), expect=1)
    assert Escrow.objects.get(pk=escrow.pk).title == "saved"


def test_each_milestone_mark_is_a_call_of_its_own_keyed_by_the_marks_before_it(chain, funded_user, trustless_work):
    """The count of the escrow's milestone-status calls is read with the milestone (one query):
    a second mark is a new call, never the first one asked again."""
    from escrow.services import escrow_milestone_mark

    buyer, seller = funded_user("20.00"), funded_user("0")
    escrow = open_funded(buyer, seller, 10 * USD, order="ord_marks")
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        first = escrow_milestone_mark(escrow=escrow, index=0, status="in progress", evidence="draft")
    assert len([q for q in queries.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]) == 3  # lock, read, queue
    second = escrow_milestone_mark(escrow=escrow, index=0, status="completed", evidence="final")
    assert (first.key, second.key) == (f"{escrow.public_id}:status:0:0", f"{escrow.public_id}:status:0:1")
    assert escrow.milestones.get(index=0).chain_status == "completed"
