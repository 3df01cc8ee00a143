"""The Airtm reconciliation (payments.airtm_reconciliation): our Airtm withdrawals and top-ups against
the payouts and payins of the sandbox Airtm the live server serves, over HTTP. Top-ups are not on
this branch: their side is driven through the reconciler's AirtmRecord interface."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from backoffice.roles import SUPPORT_AGENT, SUPPORT_LEAD
from offerhub.models import AuditLog
from payments import airtm_reconciliation
from payments.airtm_reconciliation import (
    AirtmRecord,
    airtm_compare_all,
    airtm_reconcile,
    airtm_record_reconcile,
    settler,
)
from payments.models import AirtmDiscrepancy, Withdrawal
from payments.tasks import airtm_reconcile_task
from sandbox.airtm_engine import airtm_payin_settle, airtm_payouts_advance, airtm_user_create
from sandbox.models import SandboxFault
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

USD = 10_000_000  # stroops
RECIPIENT = "reconcile@airtm.sandbox"
S = Withdrawal.Status


@pytest.fixture
def member(airtm):
    airtm_user_create(email=RECIPIENT)
    return UserFactory()


def withdrawal(user, *, status=S.PENDING, amount="20.00", destination="airtm_balance", **fields) -> Withdrawal:
    return Withdrawal.objects.create(
        user=user,
        amount=int(Decimal(amount) * USD),
        status=status,
        destination_type=destination,
        destination_ref=RECIPIENT,
        **fields,
    )


def payout_for(airtm, row: Withdrawal, *, amount=None, steps: int = 2, link: bool = True):
    """The payout our Airtm withdrawal made, under its public id as code, moved `steps` steps on
    (COMMITTED → PENDING → COMPLETED)."""
    amount = amount or Decimal(row.amount) / USD
    payout = airtm.payout_create(code=row.public_id, email=RECIPIENT, amount=Decimal(amount), notes="x", commit=True)
    for step in range(steps):
        airtm_payouts_advance(now=timezone.now() + timedelta(minutes=5 * (step + 1)))
    if link:
        Withdrawal.objects.filter(pk=row.pk).update(airtm_payout_id=payout.id)
    return airtm.payout_get(payout.id)


def payin(airtm, code: str, amount="30.00", outcome: str | None = "pay"):
    created = airtm.payin_create(
        code=code,
        amount=Decimal(amount),
        description="Top-up",
        confirmation_uri="https://shop.example/ok",
        cancel_uri="https://shop.example/cancel",
    )
    if outcome:
        airtm_payin_settle(airtm_id=created.id, outcome=outcome)
    return airtm.payin_get(created.id)


def topup(code: str, *, status: str, amount="30.00", airtm_id: str = "") -> AirtmRecord:
    """A top-up as the reconciler reads it (the Topup model is not on this branch)."""
    return AirtmRecord("payin", code, code, airtm_id, status, int(Decimal(amount) * USD), "usr_topup")


def open_problems() -> dict[str, str]:
    return dict(AirtmDiscrepancy.objects.filter(status="OPEN").values_list("our_reference", "problem"))


def settle_payout(*, withdrawal):
    """Stands in for payments.airtm_withdrawals.withdrawal_refresh_airtm (not on this branch):
    applies Airtm's final status to the withdrawal."""
    from payments.airtm import AirtmClient, PayoutStatus

    row = Withdrawal.objects.get(pk=withdrawal.pk)
    if AirtmClient().payout_get(row.airtm_payout_id).status == PayoutStatus.COMPLETED:
        row.complete()
        row.save()
    return row


# --- payouts -------------------------------------------------------------------------------


def test_agreement_and_money_still_moving_on_both_sides_record_nothing(airtm, member):
    done = withdrawal(member, status=S.COMPLETED)
    payout_for(airtm, done)
    moving = withdrawal(member, status=S.COMMITTED)
    payout_for(airtm, moving, steps=0)
    never_sent = withdrawal(member, status=S.FAILED)  # its create never reached Airtm
    crypto = withdrawal(member, status=S.PENDING, destination="crypto")  # not Airtm's: not asked

    outcome = airtm_compare_all(client=airtm)
    assert (outcome.checked, outcome.drifting, outcome.failed) == (3, 0, [])
    assert str(outcome) == "3 Airtm top-up(s) and withdrawal(s) compared, none with a discrepancy"
    assert not AirtmDiscrepancy.objects.exists()
    assert never_sent.public_id and crypto.public_id


def test_airtm_final_while_we_wait_is_reported_once_then_settled_and_resolved(airtm, member, monkeypatch):
    row = withdrawal(member, status=S.PENDING)
    payout = payout_for(airtm, row)
    assert payout.provider_status == "COMPLETED"

    (found,) = airtm_reconcile(client=airtm)
    assert found.problem == "Airtm says COMPLETED, we say WITHDRAWAL_PENDING."
    assert (found.kind, found.our_reference, found.airtm_id) == ("payout", row.public_id, payout.id)
    assert (found.our_status, found.airtm_status, found.our_amount, found.airtm_amount) == (
        "WITHDRAWAL_PENDING",
        "COMPLETED",
        20 * USD,
        20 * USD,
    )
    audit = AuditLog.objects.get(action="reconciliation.airtm_discrepancy_found")
    assert (audit.resource_type, audit.resource_id, audit.result) == ("Withdrawal", row.public_id, "DISCREPANCY_FOUND")
    assert audit.user_id == member.public_id and audit.payload_after["airtmStatus"] == "COMPLETED"

    (again,) = airtm_reconcile(client=airtm)  # still there: the same row, seen again
    assert again.pk == found.pk and again.last_seen_at > found.last_seen_at
    assert AirtmDiscrepancy.objects.count() == 1
    assert AuditLog.objects.filter(action="reconciliation.airtm_discrepancy_found").count() == 1

    # With our service installed, the reconciler settles the withdrawal before comparing.
    monkeypatch.setitem(airtm_reconciliation.SETTLERS, "payout", f"{__name__}.settle_payout")
    assert airtm_reconcile(client=airtm) == []
    assert Withdrawal.objects.get(pk=row.pk).status == S.COMPLETED
    closed = AirtmDiscrepancy.objects.get()
    assert closed.status == "RESOLVED" and closed.resolved_at and "Back in agreement" in closed.note
    assert AuditLog.objects.filter(
        action="reconciliation.airtm_discrepancy_cleared", resource_id=row.public_id
    ).exists()


@pytest.mark.parametrize(
    ("ours", "steps", "problem"),
    [
        (S.FAILED, 2, "Airtm says COMPLETED, we say WITHDRAWAL_FAILED."),
        (S.CANCELED, 2, "Airtm says COMPLETED, we say WITHDRAWAL_CANCELED."),
        (S.COMPLETED, 1, "Airtm says PENDING (still moving), we say WITHDRAWAL_COMPLETED."),
    ],
)
def test_outcomes_that_disagree_are_named(airtm, member, ours, steps, problem):
    row = withdrawal(member, status=ours)
    payout_for(airtm, row, steps=steps)
    assert open_problems() == {} and [d.problem for d in airtm_reconcile(client=airtm)] == [problem]


def test_a_failure_and_a_cancel_are_the_same_outcome(airtm, member):
    row = withdrawal(member, status=S.FAILED)
    payout = airtm.payout_create(code=row.public_id, email=RECIPIENT, amount=Decimal("20.00"), notes="x")
    assert airtm.payout_cancel(payout.id).provider_status == "CANCELED"
    Withdrawal.objects.filter(pk=row.pk).update(airtm_payout_id=payout.id)
    assert airtm_reconcile(client=airtm) == []
    assert not AirtmDiscrepancy.objects.exists()


def test_amounts_that_differ_are_named_in_dollars(airtm, member):
    row = withdrawal(member, status=S.COMPLETED, amount="20.00")
    payout_for(airtm, row, amount="25.00")
    (found,) = airtm_reconcile(client=airtm)
    assert found.problem == "Airtm says $25.00, we say $20.00."
    assert (found.our_amount, found.airtm_amount) == (20 * USD, 25 * USD)


def test_a_payout_airtm_holds_under_our_code_that_we_do_not_know(airtm, member):
    row = withdrawal(member, status=S.FAILED)  # we believed the create failed and returned the hold
    payout = payout_for(airtm, row, link=False)
    (found,) = airtm_reconcile(client=airtm)
    assert found.airtm_id == payout.id
    assert found.problem == (
        f"Airtm has payout {payout.id} under our code {row.public_id} (COMPLETED), but {row.public_id} does not "
        f"know it (no Airtm id); we say WITHDRAWAL_FAILED; Airtm says COMPLETED, we say WITHDRAWAL_FAILED."
    )


def test_an_airtm_id_airtm_does_not_know(airtm, member):
    row = withdrawal(member, status=S.PENDING, airtm_payout_id="6d1f0c1e-0000-4000-8000-000000000000")
    (found,) = airtm_reconcile(client=airtm)
    assert found.problem == (
        f"Airtm does not know payout 6d1f0c1e-0000-4000-8000-000000000000 (404), which {row.public_id} points at; "
        "we say WITHDRAWAL_PENDING."
    )
    assert (found.airtm_status, found.airtm_amount) == ("", None)


def test_one_record_airtm_cannot_answer_for_does_not_stop_the_others(airtm, member):
    broken = withdrawal(member, status=S.PENDING)
    broken_payout = payout_for(airtm, broken)
    fine = withdrawal(member, status=S.PENDING)
    payout_for(airtm, fine)
    SandboxFault.objects.create(service="airtm", method="GET", path_contains=broken_payout.id, status_code=500)

    outcome = airtm_compare_all(client=airtm)
    assert outcome.failed == [broken.public_id] and outcome.checked == 1
    assert open_problems() == {fine.public_id: "Airtm says COMPLETED, we say WITHDRAWAL_PENDING."}
    assert "1 not readable now" in str(outcome)


def test_what_is_compared_in_flight_recent_or_still_open(airtm, member, settings):
    old = withdrawal(member, status=S.FAILED)
    payout_for(airtm, old)  # COMPLETED at Airtm: a discrepancy, if it is looked at
    Withdrawal.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=8))
    assert airtm_compare_all(client=airtm).checked == 0  # final, and untouched for 8 days (default 7)

    settings.OFFERHUB_AIRTM_RECONCILE_DAYS = 10
    assert [d.our_reference for d in airtm_reconcile(client=airtm)] == [old.public_id]

    settings.OFFERHUB_AIRTM_RECONCILE_DAYS = 7  # out of the window again, but OPEN: still compared
    Withdrawal.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=8))
    assert airtm_compare_all(client=airtm).checked == 1


def test_the_settle_step_is_skipped_when_our_service_is_not_installed(monkeypatch, caplog):
    monkeypatch.setitem(airtm_reconciliation.SETTLERS, "payout", "payments.no_such_module.refresh")
    assert settler("payout") is None and not caplog.records
    monkeypatch.setitem(airtm_reconciliation.SETTLERS, "payout", "payments.withdrawals.no_such_function")
    assert settler("payout") is None  # there but broken: logged, compared without settling
    assert "cannot be imported" in caplog.text
    monkeypatch.setitem(airtm_reconciliation.SETTLERS, "payout", f"{__name__}.settle_payout")
    assert settler("payout") is settle_payout


# --- payins (through the record interface) ------------------------------------------------


def test_a_payin_airtm_confirmed_that_we_say_canceled(airtm):
    confirmed = payin(airtm, "tu_reconcile_1")
    found = airtm_record_reconcile(
        record=topup("tu_reconcile_1", status="TOPUP_CANCELED", airtm_id=confirmed.id), client=airtm
    )
    assert found.problem == "Airtm says CONFIRMED, we say TOPUP_CANCELED."
    assert (found.kind, found.our_reference, found.airtm_id) == ("payin", "tu_reconcile_1", confirmed.id)
    audit = AuditLog.objects.get(action="reconciliation.airtm_discrepancy_found")
    assert (audit.resource_type, audit.resource_id) == ("Topup", "tu_reconcile_1")


def test_payins_in_agreement_in_flight_or_failed_either_way_record_nothing(airtm):
    paid, waiting, canceled = (
        payin(airtm, "tu_ok"),
        payin(airtm, "tu_wait", outcome=None),
        payin(airtm, "tu_cx", outcome="cancel"),
    )
    assert (
        airtm_record_reconcile(record=topup("tu_ok", status="TOPUP_SUCCEEDED", airtm_id=paid.id), client=airtm) is None
    )
    assert (
        airtm_record_reconcile(
            record=topup("tu_wait", status="TOPUP_AWAITING_USER_CONFIRMATION", airtm_id=waiting.id), client=airtm
        )
        is None
    )
    assert (
        airtm_record_reconcile(record=topup("tu_cx", status="TOPUP_FAILED", airtm_id=canceled.id), client=airtm) is None
    )
    assert airtm_record_reconcile(record=topup("tu_never", status="TOPUP_FAILED"), client=airtm) is None
    assert not AirtmDiscrepancy.objects.exists()


def test_payin_amount_code_and_missing_payin_discrepancies(airtm):
    paid = payin(airtm, "tu_amount", amount="30.00")
    found = airtm_record_reconcile(
        record=topup("tu_amount", status="TOPUP_SUCCEEDED", amount="31.00", airtm_id=paid.id), client=airtm
    )
    assert found.problem == "Airtm says $30.00, we say $31.00."

    unknown = payin(airtm, "tu_unknown")
    found = airtm_record_reconcile(record=topup("tu_unknown", status="TOPUP_FAILED"), client=airtm)
    assert found.problem == (
        f"Airtm has payin {unknown.id} under our code tu_unknown (CONFIRMED), but tu_unknown does not know it "
        "(no Airtm id); we say TOPUP_FAILED; Airtm says CONFIRMED, we say TOPUP_FAILED."
    )

    found = airtm_record_reconcile(record=topup("tu_ghost", status="TOPUP_SUCCEEDED"), client=airtm)
    assert found.problem == "We say TOPUP_SUCCEEDED, but Airtm has no payin under our code tu_ghost."


# --- the task and the schedule ----------------------------------------------------------------


def test_the_hourly_task_reports_how_many_are_open(airtm, member):
    row = withdrawal(member, status=S.PENDING)
    payout_for(airtm, row)
    assert airtm_reconcile_task() == 1
    entry = next(e for e in django_settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == airtm_reconcile_task.name)
    assert entry["task"] == "payments.tasks.airtm_reconcile_task"
    assert entry["schedule"].hour == set(range(24)) and len(entry["schedule"].minute) == 1  # hourly


# --- the backoffice -----------------------------------------------------------------------


def staff(client, group: str):
    user = UserFactory(is_staff=True, display_name=f"{group} person")
    user.groups.add(Group.objects.get(name=group))
    client.force_login(user)
    client.user = user
    return client


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_reconciliation_page_lists_open_airtm_discrepancies_and_counts_them(
    airtm, member, client, django_assert_max_num_queries
):
    row = withdrawal(member, status=S.PENDING)
    payout_for(airtm, row)
    (found,) = airtm_reconcile(client=airtm)
    lead = staff(client, SUPPORT_LEAD)

    with django_assert_max_num_queries(20):
        page = lead.get(reverse("admin:payments_reconciliationreport_changelist")).content.decode()
    words = text(page)
    assert "Open: 0 wallet drift reports , 0 escrow drift reports , 1 Airtm discrepancies" in words
    assert "Airtm discrepancies still open" in words
    assert f"withdrawal (Airtm payout) {row.public_id}" in words
    assert "Airtm says COMPLETED, we say WITHDRAWAL_PENDING." in words
    assert reverse("admin:payments_airtmdiscrepancy_change", args=[found.pk]) in page

    own = lead.get(reverse("admin:payments_airtmdiscrepancy_changelist")).content.decode()
    assert "Airtm discrepancies still open" not in own  # listed on the wallet page only
    assert "<strong>1 Airtm discrepancies</strong>" in own


def test_support_runs_it_now_reads_it_and_resolves_it_with_a_note(airtm, member, client):
    row = withdrawal(member, status=S.PENDING)
    payout_for(airtm, row)
    lead = staff(client, SUPPORT_LEAD)

    ran = lead.post(reverse("admin:payments_airtmdiscrepancy_run"))
    assert ran.status_code == 302
    assert [str(m) for m in get_messages(ran.wsgi_request)] == [
        "Ran the airtm comparison now: 1 Airtm top-up(s) and withdrawal(s) compared, 1 with a discrepancy."
    ]
    run = AuditLog.objects.get(action="reconciliation.run")
    assert (run.resource_id, run.payload_after) == ("airtm", {"checked": 1, "drifting": 1})

    found = AirtmDiscrepancy.objects.get()
    page = text(lead.get(reverse("admin:payments_airtmdiscrepancy_change", args=[found.pk])).content.decode())
    assert f"The withdrawal {row.public_id} (Airtm payout {found.airtm_id}): Airtm says COMPLETED" in page
    note = reverse("admin:payments_airtmdiscrepancy_note", args=[found.pk])
    lead.post(note, {"note": "Completed at Airtm; withdrawal settled by hand.", "decision": "resolve"})
    found = AirtmDiscrepancy.objects.get()
    assert found.status == "RESOLVED" and "settled by hand" in found.note
    resolved = AuditLog.objects.get(action="reconciliation.resolved")
    assert (resolved.resource_type, resolved.actor_id) == ("AirtmDiscrepancy", lead.user.public_id)


def test_an_agent_sees_no_airtm_discrepancy(airtm, member, client):
    row = withdrawal(member, status=S.PENDING)
    payout_for(airtm, row)
    (found,) = airtm_reconcile(client=airtm)
    agent = staff(client, SUPPORT_AGENT)
    assert agent.get(reverse("admin:payments_airtmdiscrepancy_change", args=[found.pk])).status_code == 403
    assert agent.post(reverse("admin:payments_airtmdiscrepancy_run")).status_code == 403
