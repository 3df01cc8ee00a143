"""The Airtm reconciliation (payments.airtm_reconciliation), end to end over HTTP: our top-ups and
Airtm withdrawals, made and settled by their real services, against the payins and payouts of the
sandbox Airtm and the sandbox chain the live server serves."""

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
from payments.airtm_reconciliation import airtm_compare_all, airtm_reconcile
from payments.airtm_withdrawals import withdrawal_create_airtm
from payments.ledger import user_accounts
from payments.models import AirtmDiscrepancy, Hold, Topup, Withdrawal
from payments.tasks import airtm_reconcile_task
from payments.topups import topup_create
from payments.wallets import platform_account
from sandbox.airtm_engine import airtm_payin_settle, airtm_payouts_advance, airtm_user_create
from sandbox.models import SandboxAirtmPayin, SandboxAirtmPayout, SandboxFault
from tests.factories import UserFactory
from tests.payments.topup_helpers import (
    airtm_credits,
    available,
    member_fixture,  # noqa: F401  (fixture "member": a linked member with a wallet)
    sandbox_fixture,  # noqa: F401  (fixture "sandbox")
)

pytestmark = pytest.mark.django_db(transaction=True)

USD = 10_000_000  # stroops
RECIPIENT = "reconcile@airtm.sandbox"
S = Withdrawal.Status
T = Topup.Status


def later(seconds: float = 3600):
    return timezone.now() + timedelta(seconds=seconds)


def open_problems() -> dict[str, str]:
    return dict(AirtmDiscrepancy.objects.filter(status="OPEN").values_list("our_reference", "problem"))


def fetch_topup(topup: Topup) -> Topup:
    return Topup.objects.select_related("bridge_withdrawal").get(pk=topup.pk)


def fetch(withdrawal: Withdrawal) -> Withdrawal:
    return Withdrawal.objects.get(pk=withdrawal.pk)


def found_audits(reference: str) -> int:
    return AuditLog.objects.filter(action="reconciliation.airtm_discrepancy_found", resource_id=reference).count()


def minutes_ago(problem: str) -> int:
    return int(re.match(r"Paid at Airtm (\d+) minutes ago; ", problem).group(1))


# --- top-ups, made by topup_create and paid at the sandbox checkout -------------------------


def top_up(user, amount="25.00") -> Topup:
    topup = topup_create(user=user, amount=Decimal(amount), actor_type="USER", actor_id=user.public_id)
    assert topup.status == T.AWAITING_USER_CONFIRMATION
    return topup


def pay(topup: Topup) -> None:
    """The member pays at Airtm's checkout; the webhook goes to a closed port (the suite's default): lost."""
    airtm_payin_settle(airtm_id=topup.airtm_payin_id, outcome="pay")


def test_a_paid_payin_whose_webhook_was_lost_is_settled_and_credited_once_with_no_discrepancy(member, airtm):
    topup = top_up(member, "25.00")
    pay(topup)
    assert fetch_topup(topup).status == T.AWAITING_USER_CONFIRMATION  # nothing told us

    outcome = airtm_compare_all(client=airtm)
    assert (outcome.checked, outcome.drifting, outcome.failed) == (1, 0, [])
    topup = fetch_topup(topup)
    assert topup.status == T.SUCCEEDED and topup.bridge_withdrawal.status == S.COMPLETED
    assert available(member) == Decimal("25.00") and len(airtm_credits(member)) == 1

    assert airtm_compare_all(client=airtm).drifting == 0  # again: compared (changed recently), nothing moves
    assert available(member) == Decimal("25.00") and len(airtm_credits(member)) == 1
    assert not AirtmDiscrepancy.objects.exists()
    assert not AuditLog.objects.filter(action__startswith="reconciliation.airtm_discrepancy").exists()


def test_amounts_that_differ_are_one_open_discrepancy_until_airtm_agrees_again(member, airtm):
    topup = top_up(member, "25.00")
    SandboxAirtmPayin.objects.filter(airtm_id=topup.airtm_payin_id).update(amount_cents=3000)
    pay(topup)

    (found,) = airtm_reconcile(client=airtm)
    assert (
        found.problem
        == "Airtm says CONFIRMED, we say TOPUP_AWAITING_USER_CONFIRMATION; Airtm says $30.00, we say $25.00."
    )
    assert (found.kind, found.our_reference, found.airtm_id) == ("payin", topup.public_id, topup.airtm_payin_id)
    assert (found.our_status, found.airtm_status, found.our_amount, found.airtm_amount) == (
        T.AWAITING_USER_CONFIRMATION,
        "CONFIRMED",
        25 * USD,
        30 * USD,
    )
    audit = AuditLog.objects.get(action="reconciliation.airtm_discrepancy_found")
    assert (audit.resource_type, audit.resource_id, audit.result) == ("Topup", topup.public_id, "DISCREPANCY_FOUND")
    assert audit.user_id == member.public_id and audit.payload_after["airtmAmount"] == "30.00"
    assert available(member) == 0  # our service does not credit a payment it disagrees with

    (again,) = airtm_reconcile(client=airtm)  # still there: the same row, seen again
    assert again.pk == found.pk and again.last_seen_at > found.last_seen_at
    assert AirtmDiscrepancy.objects.count() == 1 and found_audits(topup.public_id) == 1

    SandboxAirtmPayin.objects.filter(airtm_id=topup.airtm_payin_id).update(amount_cents=2500)  # corrected at Airtm
    assert airtm_reconcile(client=airtm) == []
    assert fetch_topup(topup).status == T.SUCCEEDED
    assert available(member) == Decimal("25.00") and len(airtm_credits(member)) == 1
    closed = AirtmDiscrepancy.objects.get()
    assert closed.status == "RESOLVED" and closed.resolved_at and "Back in agreement" in closed.note
    cleared = AuditLog.objects.get(action="reconciliation.airtm_discrepancy_cleared")
    assert (cleared.resource_id, cleared.payload_after["ourStatus"]) == (topup.public_id, T.SUCCEEDED)


def test_a_bridge_on_its_way_agrees_until_it_is_stuck_then_is_named_and_cleared_once_it_lands(
    member, airtm, chain, settings
):
    settings.SANDBOX_PROVIDERS = [name for name in settings.SANDBOX_PROVIDERS if name != "stellar"]  # no faucet
    topup = top_up(member, "30.00")
    pay(topup)

    assert airtm_reconcile(client=airtm) == []  # paid at Airtm, the treasury short: the bridge waits
    topup = fetch_topup(topup)
    assert topup.status == T.PROCESSING and topup.bridge_withdrawal.status == S.PENDING
    assert topup.bridge_withdrawal.error_code == "op_underfunded"
    assert not AirtmDiscrepancy.objects.exists()

    stuck = settings.OFFERHUB_AIRTM_BRIDGE_STUCK_MINUTES + 30
    SandboxAirtmPayin.objects.filter(airtm_id=topup.airtm_payin_id).update(
        updated_at=timezone.now() - timedelta(minutes=stuck)
    )
    (found,) = airtm_reconcile(client=airtm)
    assert found.our_reference == topup.public_id and minutes_ago(found.problem) >= stuck
    assert found.problem.endswith(
        " minutes ago; the USDC has not reached the member's wallet: The platform treasury holds too little "
        "USDC for this top-up; it is paid once refilled."
    )
    assert (found.our_status, found.airtm_status) == (T.PROCESSING, "CONFIRMED")
    assert airtm_reconcile(client=airtm)[0].pk == found.pk and found_audits(topup.public_id) == 1

    chain.mint(platform_account().public_key, "30")  # the treasury refilled
    Withdrawal.objects.filter(pk=topup.bridge_withdrawal.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    assert airtm_reconcile(client=airtm) == []  # the reconciler drives the bridge again: it lands
    assert fetch_topup(topup).status == T.SUCCEEDED
    assert available(member) == Decimal("30.00") and len(airtm_credits(member)) == 1
    assert AirtmDiscrepancy.objects.get().status == "RESOLVED"


def topup_row(user, *, status, amount="30.00", airtm_payin_id="") -> Topup:
    """A top-up our service has finished with (it never moves a terminal one again)."""
    return Topup.objects.create(
        user=user, amount=int(Decimal(amount) * USD), status=status, airtm_payin_id=airtm_payin_id
    )


def payin_for(airtm, topup: Topup, *, amount="30.00", outcome: str | None = "pay", link=True):
    created = airtm.payin_create(
        code=topup.public_id,
        amount=Decimal(amount),
        description="Top-up",
        confirmation_uri="https://shop.example/ok",
        cancel_uri="https://shop.example/cancel",
    )
    if outcome:
        airtm_payin_settle(airtm_id=created.id, outcome=outcome)
    if link:
        Topup.objects.filter(pk=topup.pk).update(airtm_payin_id=created.id)
    return airtm.payin_get(created.id)


def test_finished_top_ups_that_agree_record_nothing(airtm):
    user = UserFactory()
    payin_for(airtm, topup_row(user, status=T.SUCCEEDED))
    payin_for(airtm, topup_row(user, status=T.FAILED), outcome="cancel")  # failed and canceled agree
    payin_for(airtm, topup_row(user, status=T.CANCELED), outcome="fail")
    topup_row(user, status=T.FAILED)  # its payin never reached Airtm: nothing to compare

    outcome = airtm_compare_all(client=airtm)
    assert (outcome.checked, outcome.drifting) == (4, 0)
    assert str(outcome) == "4 Airtm top-up(s) and withdrawal(s) compared, none with a discrepancy"


def test_finished_top_ups_that_disagree_are_named(airtm):
    user = UserFactory()
    canceled = topup_row(user, status=T.CANCELED)
    confirmed = payin_for(airtm, canceled)
    amount = topup_row(user, status=T.SUCCEEDED, amount="31.00")
    payin_for(airtm, amount, amount="30.00")
    unknown = topup_row(user, status=T.FAILED)  # we never learnt the payin Airtm made
    unknown_payin = payin_for(airtm, unknown, link=False)
    ghost = topup_row(user, status=T.SUCCEEDED)

    airtm_reconcile(client=airtm)
    assert open_problems() == {
        canceled.public_id: "Airtm says CONFIRMED, we say TOPUP_CANCELED.",
        amount.public_id: "Airtm says $30.00, we say $31.00.",
        unknown.public_id: (
            f"Airtm has payin {unknown_payin.id} under our code {unknown.public_id} (CONFIRMED), but "
            f"{unknown.public_id} does not know it (no Airtm id); we say TOPUP_FAILED; Airtm says CONFIRMED, we "
            "say TOPUP_FAILED."
        ),
        ghost.public_id: f"We say TOPUP_SUCCEEDED, but Airtm has no payin under our code {ghost.public_id}.",
    }
    assert AirtmDiscrepancy.objects.get(our_reference=canceled.public_id).airtm_id == confirmed.id
    assert AirtmDiscrepancy.objects.get(our_reference=unknown.public_id).airtm_id == unknown_payin.id


def test_one_record_that_fails_never_stops_the_run(member, airtm):
    broken, fine = top_up(member, "10.00"), top_up(member, "11.00")
    pay(broken)
    pay(fine)
    SandboxFault.objects.create(service="airtm", method="GET", path_contains=broken.airtm_payin_id, status_code=500)

    outcome = airtm_compare_all(client=airtm)
    assert outcome.failed == [broken.public_id] and outcome.checked == 1 and outcome.drifting == 0
    assert "1 not readable now" in str(outcome)
    assert fetch_topup(broken).status == T.AWAITING_USER_CONFIRMATION
    assert fetch_topup(fine).status == T.SUCCEEDED and available(member) == Decimal("11.00")

    SandboxFault.objects.all().delete()  # Airtm answers again: compared and settled at the next run
    outcome = airtm_compare_all(client=airtm)
    assert (outcome.failed, outcome.drifting) == ([], 0)
    assert fetch_topup(broken).status == T.SUCCEEDED and available(member) == Decimal("21.00")


# --- Airtm withdrawals, made by withdrawal_create_airtm and paid by the sandbox ---------------


def withdraw(user, airtm, amount="30.00") -> Withdrawal:
    withdrawal = withdrawal_create_airtm(
        user=user,
        amount=Decimal(amount),
        destination_type="airtm_balance",
        destination_ref=user.airtm_email,
        commit=True,
        actor_type="USER",
        actor_id=user.public_id,
        airtm=airtm,
    )
    assert withdrawal.status == S.COMMITTED
    return withdrawal


def paid_at_airtm(withdrawal: Withdrawal) -> None:
    """COMMITTED → PENDING → COMPLETED at Airtm; the webhooks go to a closed port: lost."""
    airtm_payouts_advance(now=later())
    airtm_payouts_advance(now=later(7200))
    assert SandboxAirtmPayout.objects.get(code=withdrawal.public_id).status == "COMPLETED"


def balances(user) -> tuple[int, int]:
    available_account, held = user_accounts(user)
    return available_account.balance, held.balance


def test_a_payout_completed_at_airtm_whose_webhook_was_lost_is_settled_and_swept_with_no_discrepancy(
    chain, linked, airtm
):
    user = linked("100.00")
    treasury = platform_account().public_key
    treasury_before = chain.usdc(treasury) or Decimal(0)
    withdrawal = withdraw(user, airtm, "30.00")
    paid_at_airtm(withdrawal)
    assert fetch(withdrawal).status == S.COMMITTED  # nothing told us

    outcome = airtm_compare_all(client=airtm)
    assert (outcome.checked, outcome.drifting, outcome.failed) == (1, 0, [])
    withdrawal = fetch(withdrawal)
    assert withdrawal.status == S.COMPLETED and len(withdrawal.transaction_hash) == 64
    assert Hold.objects.get(reference=withdrawal.public_id).status == Hold.Status.POSTED
    assert balances(user) == (70 * USD, 0)
    assert chain.usdc(user.wallet.public_key) == Decimal("70") and chain.usdc(treasury) == treasury_before + 30

    assert airtm_compare_all(client=airtm).drifting == 0  # again: swept once
    assert chain.usdc(treasury) == treasury_before + 30
    assert not AirtmDiscrepancy.objects.exists()


def test_a_sweep_on_its_way_agrees_until_it_is_stuck(chain, linked, airtm, settings):
    user = linked("100.00")
    withdrawal = withdraw(user, airtm, "30.00")
    paid_at_airtm(withdrawal)
    SandboxFault.objects.create(service="horizon", method="POST", path_contains="/transactions", status_code=503)

    assert airtm_reconcile(client=airtm) == []  # Airtm paid, the sweep cannot be sent yet: it waits
    withdrawal = fetch(withdrawal)
    assert withdrawal.status == S.PENDING and balances(user) == (70 * USD, 30 * USD)

    stuck = settings.OFFERHUB_AIRTM_BRIDGE_STUCK_MINUTES + 30
    SandboxAirtmPayout.objects.filter(code=withdrawal.public_id).update(
        updated_at=timezone.now() - timedelta(minutes=stuck)
    )
    (found,) = airtm_reconcile(client=airtm)
    assert minutes_ago(found.problem) >= stuck
    assert found.problem.endswith(  # the sweep's own word on what it waits for
        " minutes ago; the USDC has not reached the treasury: Waiting for Stellar (PROVIDER_ERROR: Stellar (Horizon) "
        "answered 503); the payment will be checked again."
    )
    assert (found.kind, found.our_status, found.airtm_status) == ("payout", S.PENDING, "COMPLETED")

    SandboxFault.objects.all().delete()  # Horizon answers again: the next run sweeps and clears it
    assert airtm_reconcile(client=airtm) == []
    assert fetch(withdrawal).status == S.COMPLETED and balances(user) == (70 * USD, 0)
    assert AirtmDiscrepancy.objects.get().status == "RESOLVED"


# --- Airtm withdrawals our service has finished with (it never moves a terminal one again) -------


@pytest.fixture
def recipient(airtm):
    return airtm_user_create(email=RECIPIENT)


def withdrawal_row(user, *, status, amount="20.00", destination="airtm_balance", **fields) -> Withdrawal:
    return Withdrawal.objects.create(
        user=user,
        amount=int(Decimal(amount) * USD),
        status=status,
        destination_type=destination,
        destination_ref=RECIPIENT,
        **fields,
    )


def payout_for(airtm, row: Withdrawal, *, amount=None, steps: int = 2, link: bool = True):
    """The payout our withdrawal made, under its public id as code, moved `steps` steps on
    (COMMITTED → PENDING → COMPLETED)."""
    amount = amount or Decimal(row.amount) / USD
    payout = airtm.payout_create(code=row.public_id, email=RECIPIENT, amount=Decimal(amount), notes="x", commit=True)
    for step in range(steps):
        airtm_payouts_advance(now=timezone.now() + timedelta(minutes=5 * (step + 1)))
    if link:
        Withdrawal.objects.filter(pk=row.pk).update(airtm_payout_id=payout.id)
    return airtm.payout_get(payout.id)


def test_finished_withdrawals_that_agree_or_are_not_airtms_record_nothing(airtm, recipient):
    user = UserFactory()
    payout_for(airtm, withdrawal_row(user, status=S.COMPLETED))
    failed = withdrawal_row(user, status=S.FAILED)
    payout = airtm.payout_create(code=failed.public_id, email=RECIPIENT, amount=Decimal("20.00"), notes="x")
    assert airtm.payout_cancel(payout.id).provider_status == "CANCELED"  # failed and canceled agree
    Withdrawal.objects.filter(pk=failed.pk).update(airtm_payout_id=payout.id)
    withdrawal_row(user, status=S.FAILED)  # its create never reached Airtm
    withdrawal_row(user, status=S.PENDING, destination="crypto")  # not Airtm's: not asked

    outcome = airtm_compare_all(client=airtm)
    assert (outcome.checked, outcome.drifting, outcome.failed) == (3, 0, [])
    assert not AirtmDiscrepancy.objects.exists()


@pytest.mark.parametrize(
    ("ours", "steps", "problem"),
    [
        (S.FAILED, 2, "Airtm says COMPLETED, we say WITHDRAWAL_FAILED."),
        (S.CANCELED, 2, "Airtm says COMPLETED, we say WITHDRAWAL_CANCELED."),
        (S.COMPLETED, 1, "Airtm says PENDING (still moving), we say WITHDRAWAL_COMPLETED."),
    ],
)
def test_outcomes_that_disagree_are_named(airtm, recipient, ours, steps, problem):
    row = withdrawal_row(UserFactory(), status=ours)
    payout_for(airtm, row, steps=steps)
    assert [d.problem for d in airtm_reconcile(client=airtm)] == [problem]


def test_amounts_that_differ_are_named_in_dollars(airtm, recipient):
    row = withdrawal_row(UserFactory(), status=S.COMPLETED, amount="20.00")
    payout_for(airtm, row, amount="25.00")
    (found,) = airtm_reconcile(client=airtm)
    assert found.problem == "Airtm says $25.00, we say $20.00."
    assert (found.our_amount, found.airtm_amount) == (20 * USD, 25 * USD)


def test_a_payout_airtm_holds_under_our_code_that_we_do_not_know(airtm, recipient):
    row = withdrawal_row(UserFactory(), status=S.FAILED)  # we believed the create failed and returned the hold
    payout = payout_for(airtm, row, link=False)
    (found,) = airtm_reconcile(client=airtm)
    assert found.airtm_id == payout.id
    assert found.problem == (
        f"Airtm has payout {payout.id} under our code {row.public_id} (COMPLETED), but {row.public_id} does not "
        f"know it (no Airtm id); we say WITHDRAWAL_FAILED; Airtm says COMPLETED, we say WITHDRAWAL_FAILED."
    )


def test_an_airtm_id_airtm_does_not_know(airtm, recipient):
    unknown = "6d1f0c1e-0000-4000-8000-000000000000"
    row = withdrawal_row(UserFactory(), status=S.PENDING, airtm_payout_id=unknown)
    (found,) = airtm_reconcile(client=airtm)  # our service cannot settle it either (logged)
    assert found.problem == (
        f"Airtm does not know payout {unknown} (404), which {row.public_id} points at; we say WITHDRAWAL_PENDING."
    )
    assert (found.airtm_status, found.airtm_amount) == ("", None)


def test_what_is_compared_in_flight_recent_or_still_open(airtm, recipient, settings):
    old = withdrawal_row(UserFactory(), status=S.FAILED)
    payout_for(airtm, old)  # COMPLETED at Airtm: a discrepancy, if it is looked at
    Withdrawal.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=8))
    assert airtm_compare_all(client=airtm).checked == 0  # final, and untouched for 8 days (default 7)

    settings.OFFERHUB_AIRTM_RECONCILE_DAYS = 10
    assert [d.our_reference for d in airtm_reconcile(client=airtm)] == [old.public_id]

    settings.OFFERHUB_AIRTM_RECONCILE_DAYS = 7  # out of the window again, but OPEN: still compared
    Withdrawal.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=8))
    assert airtm_compare_all(client=airtm).checked == 1


# --- the task and the schedule ----------------------------------------------------------------


def test_the_hourly_task_reports_how_many_are_open(airtm, recipient):
    payout_for(airtm, withdrawal_row(UserFactory(), status=S.FAILED))
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


@pytest.fixture
def disagreeing(airtm, recipient) -> Withdrawal:
    """A withdrawal we say failed (its hold returned) that Airtm paid."""
    row = withdrawal_row(UserFactory(), status=S.FAILED)
    payout_for(airtm, row)
    return row


def test_the_reconciliation_page_lists_open_airtm_discrepancies_and_counts_them(
    airtm, disagreeing, client, django_assert_max_num_queries
):
    (found,) = airtm_reconcile(client=airtm)
    lead = staff(client, SUPPORT_LEAD)

    with django_assert_max_num_queries(20):
        page = lead.get(reverse("admin:payments_reconciliationreport_changelist")).content.decode()
    words = text(page)
    assert "Open: 0 wallet drift reports , 0 escrow drift reports , 1 Airtm discrepancies" in words
    assert "Airtm discrepancies still open" in words
    assert f"withdrawal (Airtm payout) {disagreeing.public_id}" in words
    assert "Airtm says COMPLETED, we say WITHDRAWAL_FAILED." in words
    assert reverse("admin:payments_airtmdiscrepancy_change", args=[found.pk]) in page

    own = lead.get(reverse("admin:payments_airtmdiscrepancy_changelist")).content.decode()
    assert "Airtm discrepancies still open" not in own  # listed on the wallet page only
    assert "<strong>1 Airtm discrepancies</strong>" in own


def test_support_runs_it_now_reads_it_and_resolves_it_with_a_note(airtm, disagreeing, client):
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
    assert f"The withdrawal {disagreeing.public_id} (Airtm payout {found.airtm_id}): Airtm says COMPLETED" in page
    note = reverse("admin:payments_airtmdiscrepancy_note", args=[found.pk])
    lead.post(note, {"note": "Paid at Airtm after all; hold posted by hand.", "decision": "resolve"})
    found = AirtmDiscrepancy.objects.get()
    assert found.status == "RESOLVED" and "posted by hand" in found.note
    resolved = AuditLog.objects.get(action="reconciliation.resolved")
    assert (resolved.resource_type, resolved.actor_id) == ("AirtmDiscrepancy", lead.user.public_id)


def test_an_agent_sees_no_airtm_discrepancy(airtm, disagreeing, client):
    (found,) = airtm_reconcile(client=airtm)
    agent = staff(client, SUPPORT_AGENT)
    assert agent.get(reverse("admin:payments_airtmdiscrepancy_change", args=[found.pk])).status_code == 403
    assert agent.post(reverse("admin:payments_airtmdiscrepancy_run")).status_code == 403
