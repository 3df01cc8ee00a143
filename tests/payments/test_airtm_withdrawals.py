"""Withdrawals through Airtm (payments.airtm_withdrawals) over HTTP against the sandbox Airtm and
the sandbox chain the live server serves: hold → payout → Airtm's states → sweep or hold returned."""

from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from django.utils import timezone

from offerhub.errors import ServiceError
from offerhub.models import AuditLog, Event, WebhookDelivery
from payments.airtm_withdrawals import (
    withdrawal_cancel_airtm,
    withdrawal_commit_airtm,
    withdrawal_create_airtm,
    withdrawal_refresh_airtm,
)
from payments.ledger import user_accounts
from payments.models import Hold, JournalEntry, LedgerAccount, Withdrawal
from payments.tasks import airtm_withdrawals_resolve_pending, withdrawals_resolve_pending
from payments.wallets import platform_account
from sandbox.airtm_engine import airtm_payouts_advance, airtm_user_create, airtm_webhook_headers
from sandbox.models import SandboxAirtmPayout, SandboxAirtmUser, SandboxAirtmWebhookDelivery, SandboxFault
from tests.payments.horizon_faults import horizon_down_once

pytestmark = pytest.mark.django_db(transaction=True)

S = Withdrawal.Status


def later(seconds: float = 3600):
    return timezone.now() + timedelta(seconds=seconds)


@pytest.fixture
def webhooks(live_server, settings):
    """The sandbox Airtm's webhooks reach our own endpoint (delivered as each change commits)."""
    settings.SANDBOX_AIRTM_WEBHOOK_URL = live_server.url + "/api/v1/webhooks/airtm"
    return settings.SANDBOX_AIRTM_WEBHOOK_URL


def withdraw(user, airtm, amount="30.00", commit=False, **extra):
    return withdrawal_create_airtm(
        user=user,
        amount=Decimal(amount),
        destination_type=extra.pop("destination_type", "airtm_balance"),
        destination_ref=extra.pop("destination_ref", user.airtm_email),
        commit=commit,
        actor_type="USER",
        actor_id=user.public_id,
        airtm=airtm,
        **extra,
    )


def balances(user) -> tuple[int, int]:
    available, held = user_accounts(user)
    return available.balance, held.balance


def payouts(withdrawal) -> list[SandboxAirtmPayout]:
    return list(SandboxAirtmPayout.objects.filter(code=withdrawal.public_id))


def airtm_status(withdrawal) -> str:
    return SandboxAirtmPayout.objects.get(code=withdrawal.public_id).status


def fetch(withdrawal) -> Withdrawal:
    return Withdrawal.objects.get(pk=withdrawal.pk)


def events(withdrawal) -> list[str]:
    return list(Event.objects.filter(aggregate_id=withdrawal.public_id).order_by("id").values_list("type", flat=True))


def released_events(user) -> int:
    return Event.objects.filter(type="balance.released", aggregate_id=user.public_id).count()


def hold_entries(withdrawal, kind: str) -> int:
    hold = Hold.objects.get(reference=withdrawal.public_id)
    return JournalEntry.objects.filter(kind=kind, metadata__hold=hold.pk).count()


def fault(**fields):
    return SandboxFault.objects.create(service="airtm", **fields)


def to_airtm_ledger(user) -> int:
    """What the member's holds posted to the external Airtm account."""
    account = LedgerAccount.objects.filter(kind=LedgerAccount.Kind.EXTERNAL_AIRTM).first()
    return 0 if account is None else account.balance


# --- create --------------------------------------------------------------------------------------


def test_create_holds_then_creates_one_uncommitted_payout(chain, linked, airtm):
    user = linked("100.00")
    withdrawal = withdraw(user, airtm, "30.00")
    assert withdrawal.status == S.CREATED and not withdrawal.committed
    assert withdrawal.destination_ref == user.airtm_email
    [payout] = payouts(withdrawal)
    assert payout.status == "CREATED" and withdrawal.airtm_payout_id == payout.airtm_id
    assert payout.amount_cents == 3000
    assert balances(user) == (700_000_000, 300_000_000)
    assert events(withdrawal) == ["withdrawal.created"]
    assert Hold.objects.get(reference=withdrawal.public_id).owner == Hold.Owner.PAYMENT


def test_create_with_commit_commits_at_airtm(chain, linked, airtm):
    user = linked("100.00")
    withdrawal = withdraw(user, airtm, "30.00", commit=True, destination_type="bank")
    assert withdrawal.status == S.COMMITTED and withdrawal.committed
    assert airtm_status(withdrawal) == "COMMITTED"
    assert events(withdrawal) == ["withdrawal.created", "withdrawal.committed"]
    committed = Event.objects.get(aggregate_id=withdrawal.public_id, type="withdrawal.committed").payload
    assert committed["committedBalance"] == "30.00" and committed["availableBalance"] == "70.00"


def test_unlinked_member_is_refused_before_anything_moves(chain, funded_user, airtm):
    user = funded_user("100.00")
    with pytest.raises(ServiceError) as refused:
        withdraw(user, airtm, destination_ref="someone@airtm.sandbox")
    assert refused.value.code == "AIRTM_USER_NOT_LINKED"
    assert balances(user) == (1_000_000_000, 0) and not Withdrawal.objects.exists()


@pytest.mark.parametrize(
    ("extra", "code", "field"),
    [
        ({"destination_ref": "another@airtm.sandbox"}, "WITHDRAWAL_DESTINATION_INVALID", "destinationRef"),
        ({"amount": "5.00"}, "INVALID_AMOUNT", "amount"),
        ({"amount": "5000.01"}, "INVALID_AMOUNT", "amount"),
        ({"amount": "100.01"}, "INSUFFICIENT_FUNDS", "amount"),
    ],
)
def test_bad_requests_move_nothing(chain, linked, airtm, extra, code, field):
    user = linked("100.00")
    with pytest.raises(ServiceError) as refused:
        withdraw(user, airtm, **extra)
    assert (refused.value.code, refused.value.field) == (code, field)
    assert balances(user) == (1_000_000_000, 0) and not SandboxAirtmPayout.objects.exists()


def test_destination_may_name_the_linked_account_by_its_airtm_id(chain, linked, airtm):
    user = linked("100.00")
    withdrawal = withdraw(user, airtm, destination_ref=user.airtm_user_id.upper())
    assert withdrawal.destination_ref == user.airtm_email and len(payouts(withdrawal)) == 1


def test_airtm_refusing_the_payout_fails_it_and_returns_the_hold_once(chain, linked, airtm):
    user = linked("100.00")
    SandboxAirtmUser.objects.filter(email=user.airtm_email).update(status="inactive")
    withdrawal = withdraw(user, airtm, "30.00", commit=True)
    assert withdrawal.status == S.FAILED and withdrawal.error_code == "WITHDRAWAL_DESTINATION_INVALID"
    assert balances(user) == (1_000_000_000, 0)
    assert events(withdrawal) == ["withdrawal.created", "withdrawal.failed"]
    assert released_events(user) == 1
    assert airtm_withdrawals_resolve_pending() == 0  # terminal: nothing more to do
    assert balances(user) == (1_000_000_000, 0) and released_events(user) == 1


def test_platform_airtm_balance_too_low_fails_cleanly(chain, linked, airtm, settings):
    settings.SANDBOX_AIRTM_OPENING_BALANCE = "10.00"
    user = linked("100.00")
    withdrawal = withdraw(user, airtm, "30.00", commit=True)
    assert withdrawal.status == S.FAILED and withdrawal.error_code == "AIRTM_INSUFFICIENT_BALANCE"
    assert not payouts(withdrawal)  # a commit Airtm cannot pay refuses the whole create
    assert balances(user) == (1_000_000_000, 0)


# --- commit --------------------------------------------------------------------------------------


def test_commit_only_created_airtm_withdrawals(chain, linked, airtm):
    user = linked("100.00")
    withdrawal = withdraw(user, airtm, "30.00")
    withdrawal = withdrawal_commit_airtm(withdrawal=withdrawal, airtm=airtm)
    assert withdrawal.status == S.COMMITTED and airtm_status(withdrawal) == "COMMITTED"
    with pytest.raises(ServiceError) as again:
        withdrawal_commit_airtm(withdrawal=withdrawal, airtm=airtm)
    assert again.value.code == "WITHDRAWAL_NOT_COMMITTABLE"
    assert events(withdrawal).count("withdrawal.committed") == 1


# --- Airtm's states, through webhooks and the resolver -----------------------------------------------


def test_payout_that_fails_returns_the_hold_exactly_once(chain, linked, airtm, webhooks):
    user = linked("100.00", outcome=SandboxAirtmUser.PayoutOutcome.FAIL)
    withdrawal = withdraw(user, airtm, "30.00", commit=True)
    airtm_payouts_advance(now=later())  # → PENDING, delivered to us
    assert fetch(withdrawal).status == S.PENDING
    airtm_payouts_advance(now=later(7200))  # → FAILED, delivered to us
    withdrawal = fetch(withdrawal)
    assert withdrawal.status == S.FAILED and withdrawal.error_code == "SANDBOX_PAYOUT_FAILED"
    assert balances(user) == (1_000_000_000, 0)
    # The resolver, a refresh and a replayed webhook change nothing more.
    airtm_withdrawals_resolve_pending()
    withdrawal_refresh_airtm(withdrawal=withdrawal, airtm=airtm)
    delivery = SandboxAirtmWebhookDelivery.objects.filter(event_type="payout.failed").get()
    replay(delivery, msg_id="msg_replayed")
    assert balances(user) == (1_000_000_000, 0)
    assert hold_entries(withdrawal, "hold_void") == 1 and released_events(user) == 1
    assert events(withdrawal) == [
        "withdrawal.created",
        "withdrawal.committed",
        "withdrawal.pending",
        "withdrawal.failed",
    ]
    failed = Event.objects.get(aggregate_id=withdrawal.public_id, type="withdrawal.failed").payload
    assert failed["airtmPayoutId"] == withdrawal.airtm_payout_id and failed["errorCode"] == "SANDBOX_PAYOUT_FAILED"


def replay(delivery: SandboxAirtmWebhookDelivery, *, msg_id: str | None = None):
    """Post a delivery Airtm made again (the same svix-id: a duplicate; another: a new copy)."""
    if msg_id:
        delivery.msg_id = msg_id
    response = requests.post(
        delivery.url, data=delivery.payload.encode(), headers=airtm_webhook_headers(delivery), timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_webhook_bodies_are_never_trusted_and_stale_ones_never_move_back(chain, linked, airtm, webhooks):
    user = linked("100.00", outcome=SandboxAirtmUser.PayoutOutcome.FAIL)
    withdrawal = withdraw(user, airtm, "30.00", commit=True)
    airtm_payouts_advance(now=later())  # → PENDING
    assert fetch(withdrawal).status == S.PENDING
    # A forged-in-content but validly signed "failed" while Airtm still says PENDING: nothing moves.
    delivery = SandboxAirtmWebhookDelivery.objects.filter(event_type="payout.pending").get()
    delivery.payload = delivery.payload.replace('"PENDING"', '"FAILED"').replace("payout.pending", "payout.failed")
    replay(delivery, msg_id="msg_lie")
    assert fetch(withdrawal).status == S.PENDING and balances(user) == (700_000_000, 300_000_000)
    # An old "committed" arriving late does not move it back.
    old = SandboxAirtmWebhookDelivery.objects.filter(event_type="payout.committed").get()
    assert replay(old, msg_id="msg_late")["processed"] is True
    assert fetch(withdrawal).status == S.PENDING
    # The same delivery twice is a duplicate.
    assert replay(old, msg_id="msg_late").get("duplicate") is True


def test_unknown_payout_webhooks_are_ignored(chain, linked, airtm, webhooks):
    account = airtm_user_create(email="stranger@airtm.sandbox")
    airtm.payout_create(code="not-ours", email=account.email, amount=Decimal("5.00"), notes="n")
    delivery = WebhookDelivery.objects.get(event_type="payout.created")
    assert delivery.status == WebhookDelivery.Status.IGNORED and delivery.note == "unknown payout"


def test_pending_user_action_then_completes(chain, linked, airtm, webhooks):
    user = linked("100.00", outcome=SandboxAirtmUser.PayoutOutcome.USER_ACTION)
    withdrawal = withdraw(user, airtm, "30.00", commit=True)
    airtm_payouts_advance(now=later())
    airtm_payouts_advance(now=later(7200))
    assert fetch(withdrawal).status == S.PENDING_USER_ACTION
    with pytest.raises(ServiceError) as refused:  # Airtm cannot cancel it now
        withdrawal_cancel_airtm(withdrawal=withdrawal, actor_type="USER", actor_id=user.public_id, airtm=airtm)
    assert refused.value.code == "INVALID_STATE" and "can no longer be canceled" in refused.value.message
    SandboxAirtmUser.objects.filter(email=user.airtm_email).update(payout_outcome="complete")
    airtm_payouts_advance(now=later(99999))  # → COMPLETED, delivered: swept after commit
    withdrawal = fetch(withdrawal)
    assert withdrawal.status == S.COMPLETED, withdrawal.failure_reason
    assert events(withdrawal)[:5] == [
        "withdrawal.created",
        "withdrawal.committed",
        "withdrawal.pending",
        "withdrawal.pending_user_action",
        "withdrawal.pending",
    ]
    assert balances(user) == (700_000_000, 0)


def test_happy_path_create_commit_webhooks_complete_and_sweep_once(chain, linked, airtm, webhooks):
    user = linked("100.00")
    wallet, treasury = user.wallet.public_key, platform_account().public_key
    treasury_before = chain.usdc(treasury) or Decimal(0)
    withdrawal = withdraw(user, airtm, "30.00")
    withdrawal = withdrawal_commit_airtm(withdrawal=withdrawal, airtm=airtm)
    airtm_payouts_advance(now=later())
    assert fetch(withdrawal).status == S.PENDING
    airtm_payouts_advance(now=later(7200))  # → COMPLETED: the webhook reads it, the task sweeps
    withdrawal = fetch(withdrawal)
    assert withdrawal.status == S.COMPLETED, withdrawal.failure_reason
    assert len(withdrawal.transaction_hash) == 64
    assert chain.usdc(wallet) == Decimal("70") and chain.usdc(treasury) == treasury_before + 30
    assert balances(user) == (700_000_000, 0)
    assert Hold.objects.get(reference=withdrawal.public_id).status == Hold.Status.POSTED
    assert hold_entries(withdrawal, "hold_void") == 0
    assert to_airtm_ledger(user) == 300_000_000
    # Everything again: the resolver, a refresh, a replayed completed webhook. Nothing moves twice.
    assert airtm_withdrawals_resolve_pending() == 0
    withdrawal_refresh_airtm(withdrawal=withdrawal, airtm=airtm)
    replay(SandboxAirtmWebhookDelivery.objects.filter(event_type="payout.completed").get(), msg_id="msg_again")
    assert chain.usdc(wallet) == Decimal("70") and chain.usdc(treasury) == treasury_before + 30
    assert to_airtm_ledger(user) == 300_000_000
    assert events(withdrawal).count("withdrawal.completed") == 1
    assert AuditLog.objects.filter(resource_id=withdrawal.public_id, action="withdrawal.committed").count() == 1


# --- cancel ----------------------------------------------------------------------------------------


def test_cancel_while_airtm_allows_returns_the_hold_once(chain, linked, airtm):
    user = linked("100.00")
    withdrawal = withdraw(user, airtm, "30.00")
    withdrawal = withdrawal_cancel_airtm(withdrawal=withdrawal, actor_type="USER", actor_id=user.public_id, airtm=airtm)
    assert withdrawal.status == S.CANCELED and airtm_status(withdrawal) == "CANCELED"
    assert balances(user) == (1_000_000_000, 0)
    canceled = Event.objects.get(aggregate_id=withdrawal.public_id, type="withdrawal.canceled").payload
    assert canceled["canceledBy"] == "user" and canceled["refundedToBalance"] is True
    assert canceled["newAvailableBalance"] == "100.00"
    with pytest.raises(ServiceError) as again:
        withdrawal_cancel_airtm(withdrawal=withdrawal, actor_type="USER", actor_id=user.public_id, airtm=airtm)
    assert again.value.code == "INVALID_STATE"
    airtm_withdrawals_resolve_pending()
    assert balances(user) == (1_000_000_000, 0) and released_events(user) == 1


def test_cancel_of_a_pending_payout_and_409_once_committed(chain, linked, airtm):
    user = linked("100.00")
    committed = withdraw(user, airtm, "30.00", commit=True)
    with pytest.raises(ServiceError) as refused:  # COMMITTED at Airtm: it will not cancel
        withdrawal_cancel_airtm(withdrawal=committed, actor_type="USER", actor_id=user.public_id, airtm=airtm)
    assert refused.value.code == "INVALID_STATE"
    assert fetch(committed).status == S.COMMITTED and balances(user) == (700_000_000, 300_000_000)
    airtm_payouts_advance(now=later())  # → PENDING at Airtm (no webhook here: we still say COMMITTED)
    canceled = withdrawal_cancel_airtm(withdrawal=committed, actor_type="USER", actor_id=user.public_id, airtm=airtm)
    assert canceled.status == S.CANCELED and balances(user) == (1_000_000_000, 0)


# --- lost answers and crashes ---------------------------------------------------------------------


def test_lost_answer_at_creation_makes_one_payout_and_still_completes(chain, linked, airtm):
    user = linked("100.00")
    fault(method="POST", path_contains="/payouts", status_code=502, after_processing=True, remaining=1)
    fault(method="GET", path_contains="/by-code/", status_code=503, remaining=8)  # the look-ups fail too
    withdrawal = withdraw(user, airtm, "30.00", commit=True)
    assert withdrawal.status == S.CREATED and not withdrawal.airtm_payout_id  # outcome unknown: kept
    assert balances(user) == (700_000_000, 300_000_000)
    SandboxFault.objects.all().delete()
    airtm_withdrawals_resolve_pending()  # finds it by code
    withdrawal = fetch(withdrawal)
    assert withdrawal.status == S.COMMITTED and len(payouts(withdrawal)) == 1
    airtm_payouts_advance(now=later())
    airtm_payouts_advance(now=later(7200))
    airtm_withdrawals_resolve_pending()  # no webhooks here: the resolver reads COMPLETED and sweeps
    withdrawal = fetch(withdrawal)
    assert withdrawal.status == S.COMPLETED, withdrawal.failure_reason
    assert len(payouts(withdrawal)) == 1 and balances(user) == (700_000_000, 0)


def test_timeout_at_creation_is_resolved_by_code_at_once_one_payout(chain, linked, airtm):
    from payments.airtm import AirtmClient

    user = linked("100.00")
    fault(
        method="POST", path_contains="/payouts", timeout=True, timeout_seconds=1.5, after_processing=True, remaining=1
    )
    withdrawal = withdraw(user, AirtmClient(timeout=0.7, backoff=0.01), "30.00", commit=True)
    assert withdrawal.status == S.COMMITTED and len(payouts(withdrawal)) == 1
    airtm_payouts_advance(now=later())
    airtm_payouts_advance(now=later(7200))
    airtm_withdrawals_resolve_pending()
    assert fetch(withdrawal).status == S.COMPLETED and len(payouts(withdrawal)) == 1


def test_crash_after_the_hold_before_the_payout_is_created_once_by_the_resolver(chain, linked, airtm):
    user = linked("100.00")
    # A crash between the committed hold and the call to Airtm: Airtm never heard of it.
    fault(method="POST", path_contains="/payouts", status_code=503, remaining=8)
    fault(method="GET", path_contains="/by-code/", status_code=503, remaining=8)
    withdrawal = withdraw(user, airtm, "30.00", commit=True)
    assert withdrawal.status == S.CREATED and not payouts(withdrawal)
    SandboxFault.objects.all().delete()
    airtm_withdrawals_resolve_pending()
    airtm_withdrawals_resolve_pending()
    withdrawal = fetch(withdrawal)
    assert withdrawal.status == S.COMMITTED and len(payouts(withdrawal)) == 1
    assert airtm_status(withdrawal) == "COMMITTED"  # the commit asked for was kept


def test_the_crypto_resolver_leaves_airtm_withdrawals_alone(chain, linked, airtm):
    user = linked("100.00")
    withdrawal = withdraw(user, airtm, "30.00", commit=True)
    withdrawals_resolve_pending()
    assert fetch(withdrawal).status == S.COMMITTED and not fetch(withdrawal).transaction_hash


def test_one_broken_withdrawal_does_not_stop_the_resolver(chain, linked, airtm):
    user = linked("200.00")
    broken = withdraw(user, airtm, "30.00")
    fine = withdraw(user, airtm, "40.00", commit=True)
    Withdrawal.objects.filter(pk=broken.pk).update(airtm_payout_id="no-such-payout")
    airtm_payouts_advance(now=later())
    airtm_withdrawals_resolve_pending()
    assert fetch(fine).status == S.PENDING and fetch(broken).status == S.CREATED


def test_the_resolver_runs_every_minute_on_beat(settings):
    from offerhub.celery import app

    app.loader.import_default_modules()
    [entry] = [
        e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"].endswith("airtm_withdrawals_resolve_pending")
    ]
    assert entry == {"task": "payments.tasks.airtm_withdrawals_resolve_pending", "schedule": 60.0}
    assert entry["task"] in app.tasks and "payments.tasks.airtm_withdrawal_settle" in app.tasks


def test_a_sweep_once_begun_finishes_while_airtm_is_down(chain, linked, airtm):
    """Airtm's COMPLETED was read when the sweep began: an Airtm outage afterwards must not keep
    the member's USDC on hold."""
    user = linked("100.00")
    withdrawal = withdraw(user, airtm, "30.00", commit=True)
    horizon_down_once()
    airtm_payouts_advance(now=later())
    airtm_payouts_advance(now=later(7200))  # COMPLETED at Airtm
    withdrawal = withdrawal_refresh_airtm(withdrawal=withdrawal, airtm=airtm)
    assert withdrawal.status == S.PENDING and withdrawal.transaction_hash  # swept, answer lost
    fault(method="GET", path_contains="/payouts", status_code=503, remaining=50)  # Airtm down now
    withdrawal = withdrawal_refresh_airtm(withdrawal=withdrawal, airtm=airtm)
    assert withdrawal.status == S.COMPLETED and balances(user) == (700_000_000, 0)
    assert chain.usdc(user.wallet.public_key) == 70
