"""The resume sweeper: every stale escrow is driven on its own; one that keeps failing is
recorded, backed off and shown to support, and never holds the others back."""

from datetime import timedelta

import pytest
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from escrow.models import Escrow, EscrowStep
from escrow.services import escrow_fund, escrow_open, step_retry_delay
from escrow.tasks import escrow_drive_task, escrow_steps_resume
from offerhub.models import AuditLog
from payments.ledger import hold_reserve
from tests.escrow.test_lifecycle import USD
from tests.escrow.test_step_runner import deployed, fault
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _retry_policy(settings):
    settings.ESCROW_STEP_RETRY_BASE_SECONDS = 60
    settings.ESCROW_STEP_RETRY_MAX_SECONDS = 3600
    settings.ESCROW_STEP_ATTENTION_AFTER = 3


def time_passes(by: timedelta) -> None:
    """Every step's clock moves back by `by`, as if that much time had passed."""
    EscrowStep.objects.update(updated_at=F("updated_at") - by, next_attempt_at=F("next_attempt_at") - by)


def step_of(escrow: Escrow, action: str) -> EscrowStep:
    return EscrowStep.objects.get(escrow=escrow, action=action)


def escrow_status(escrow: Escrow) -> str:
    return Escrow.objects.get(pk=escrow.pk).status


def stuck_deploy(buyer, seller, settings, *, order: str = "ord_old") -> Escrow:
    """An escrow whose deploy landed on chain but cannot be settled: its answer was lost, the
    indexer lags behind the deploy, and pointing the indexer at it answers 503 until cleared."""
    settings.SANDBOX_TRUSTLESS_WORK_INDEXER_LAG = True
    fault("send-transaction", 503, remaining=1, after_processing=True)
    hold_reserve(user=buyer, reference=order, amount=10 * USD)
    escrow = escrow_open(
        engagement_id=order, buyer=buyer, seller=seller, amount=10 * USD, title="Logo", hold_reference=order
    )
    fault("update-from-txHash", 503)  # every request until the fault is cleared
    assert step_of(escrow, "deploy").status == EscrowStep.Status.SUBMITTED
    return escrow


def test_an_escrow_that_keeps_failing_does_not_hold_back_the_others(chain, funded_user, trustless_work, settings):
    seller = funded_user("0")
    young = deployed(funded_user("30.00"), seller, 10 * USD, order="ord_young")  # indexed before the lag
    old = stuck_deploy(funded_user("30.00"), seller, settings)
    fault("send-transaction", 503, remaining=1)
    escrow_fund(escrow=young)  # signed and stored, never sent: the sweeper must send it
    assert step_of(young, "fund-escrow").status == EscrowStep.Status.SUBMITTED
    time_passes(timedelta(minutes=10))  # both are stale now; the old one's step is the oldest

    escrow_steps_resume()

    assert escrow_status(young) == Escrow.Status.FUNDED  # driven in the same sweep as the failing one
    stuck = step_of(old, "deploy")
    assert stuck.status == EscrowStep.Status.SUBMITTED and escrow_status(old) == Escrow.Status.CREATING
    assert stuck.failures == 2  # the run after the lost answer, then this sweep's
    assert stuck.error_code == "PROVIDER_ERROR" and stuck.error_message
    assert stuck.next_attempt_at > timezone.now()

    # Stale by the clock of its last run, but backing off: left alone, not retried.
    time_passes(timedelta(seconds=30))
    assert escrow_steps_resume() == 0
    assert step_of(old, "deploy").failures == 2

    time_passes(timedelta(hours=1))  # due again; still failing
    assert escrow_steps_resume() == 1
    assert step_of(old, "deploy").failures == 3

    # Cleared, and time passes: the next sweep settles the deploy.
    settings.SANDBOX_TRUSTLESS_WORK_INDEXER_LAG = False
    from sandbox.models import SandboxFault

    SandboxFault.objects.update(enabled=False)
    time_passes(timedelta(hours=1))
    assert escrow_steps_resume() == 1
    recovered = step_of(old, "deploy")
    assert recovered.status == EscrowStep.Status.CONFIRMED
    assert escrow_status(old) == Escrow.Status.CREATED


def test_an_unexpected_error_in_one_escrow_is_recorded_and_the_sweep_moves_on(chain, funded_user, trustless_work):
    seller = funded_user("0")
    broken = deployed(funded_user("30.00"), seller, 10 * USD, order="ord_broken")
    building = fault("fund-escrow", 503)
    escrow_fund(escrow=broken)  # Trustless Work is down: the step is recorded, not prepared
    EscrowStep.objects.filter(escrow=broken).update(params={"amount": "ten dollars"})  # unreadable by the runner
    building.delete()
    young = deployed(funded_user("30.00"), seller, 10 * USD, order="ord_fine")
    fault("send-transaction", 503, remaining=1)
    escrow_fund(escrow=young)
    time_passes(timedelta(minutes=10))

    assert escrow_steps_resume() == 2

    assert escrow_status(young) == Escrow.Status.FUNDED
    step = step_of(broken, "fund-escrow")
    assert step.status == EscrowStep.Status.PENDING
    assert step.error_code == "INTERNAL_ERROR" and "ValueError" in step.error_message
    assert step.next_attempt_at > timezone.now()


def test_the_back_off_doubles_per_failure_up_to_its_cap():
    # base 60 s, cap 1 h (the fixture), each with up to 25 % jitter on top
    for failures, seconds in [(1, 60), (2, 120), (3, 240), (6, 1920), (7, 3600), (40, 3600)]:
        delay = step_retry_delay(failures=failures).total_seconds()
        assert seconds <= delay <= seconds * 1.25, failures


def test_a_drive_already_queued_is_not_queued_again(chain, funded_user, trustless_work, monkeypatch):
    escrow = deployed(funded_user("30.00"), funded_user("0"), 10 * USD)
    fault("send-transaction", 503, remaining=1)
    escrow_fund(escrow=escrow)
    queued = []
    monkeypatch.setattr(escrow_drive_task, "delay", queued.append)  # the workers are busy elsewhere
    time_passes(timedelta(minutes=10))

    assert escrow_steps_resume() == 1
    time_passes(timedelta(seconds=30))
    assert escrow_steps_resume() == 0  # still queued: not a second task
    time_passes(timedelta(hours=1))  # the queued task was lost (a worker died): queued again
    assert escrow_steps_resume() == 1
    assert queued == [escrow.pk, escrow.pk]


@pytest.fixture
def support_client(client):
    support = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(support)
    client.support = support
    return client


def test_support_sees_a_step_that_needs_attention_and_retries_it_now(
    chain, funded_user, trustless_work, settings, support_client
):
    seller = funded_user("0")
    old = stuck_deploy(funded_user("30.00"), seller, settings)
    steps_page = reverse("admin:escrow_escrowstep_changelist") + "?attention=yes"
    escrows_page = reverse("admin:escrow_escrow_changelist") + "?attention=yes"
    for _ in range(2):  # failures 2, then 3: the threshold
        page = support_client.get(steps_page).content.decode()
        assert old.public_id not in page
        time_passes(timedelta(hours=1))
        escrow_steps_resume()

    response = support_client.get(steps_page)
    assert response.status_code == 200
    page = response.content.decode()
    assert old.public_id in page
    assert "fault injected by the OfferHub sandbox" in page  # the last error is shown
    assert old.public_id in support_client.get(escrows_page).content.decode()

    # Fixed on the provider's side: support retries now instead of waiting out the back-off.
    from sandbox.models import SandboxFault

    SandboxFault.objects.update(enabled=False)
    settings.SANDBOX_TRUSTLESS_WORK_INDEXER_LAG = False
    step = step_of(old, "deploy")
    assert step.next_attempt_at > timezone.now()
    response = support_client.post(
        reverse("admin:escrow_escrowstep_changelist"),
        {"action": "retry_now", "_selected_action": [step.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert step_of(old, "deploy").status == EscrowStep.Status.CONFIRMED
    assert escrow_status(old) == Escrow.Status.CREATED
    assert AuditLog.objects.filter(
        action="escrow.retry_requested", resource_id=old.public_id, actor_id=support_client.support.public_id
    ).exists()
    assert old.public_id not in support_client.get(steps_page).content.decode()
