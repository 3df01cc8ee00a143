"""Top-ups through Airtm end to end (API.md §7, §13, §16), over HTTP against the sandbox Airtm the
live server serves and the sandbox Stellar network the bridge pays on."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import F
from django.utils import timezone

from offerhub.errors import ServiceError
from offerhub.models import AuditLog, WebhookDelivery
from offerhub.tasks import webhook_deliveries_sweep, webhook_delivery_process
from payments.models import Topup, Withdrawal
from payments.tasks import topups_resolve_pending
from payments.topups import topup_cancel, topup_create, topup_refresh
from tests.factories import UserFactory
from tests.payments.topup_helpers import (
    airtm_credits,
    available,
    balance_credits,
    deliveries,
    events,
    link,
    member_fixture,  # noqa: F401  (fixture "member")
    sandbox_fixture,  # noqa: F401  (fixture "sandbox")
)

pytestmark = pytest.mark.django_db(transaction=True)
S = Topup.Status


def create(user, amount="25.00", **kwargs) -> Topup:
    return topup_create(user=user, amount=Decimal(amount), actor_type="USER", actor_id=user.public_id, **kwargs)


def fresh(topup: Topup) -> Topup:
    return Topup.objects.select_related("user", "bridge_withdrawal").get(pk=topup.pk)


def fault(**fields):
    from sandbox.models import SandboxFault

    return SandboxFault.objects.create(service="airtm", **fields)


# --- the whole journey ------------------------------------------------------------------


def test_paid_at_checkout_the_webhook_bridges_and_credits_exactly_once(member, sandbox):
    topup = create(member, "25.00")
    assert topup.status == S.AWAITING_USER_CONFIRMATION
    assert topup.confirmation_uri == f"{sandbox.url}/sandbox/airtm/checkout/{topup.airtm_payin_id}"
    [payin] = sandbox.payins(topup.public_id)  # our id is the payin's unique code
    assert payin.amount_cents == 2500 and payin.airtm_id == topup.airtm_payin_id
    assert payin.confirmation_uri.endswith(f"/api/v1/topups/{topup.public_id}/callback?status=confirmed")

    sandbox.pay(topup)
    assert sandbox.deliver_all(topup) == [200, 200]  # payin.created, then payin.confirmed

    topup = fresh(topup)
    assert topup.status == S.SUCCEEDED and topup.payin_confirmed_at and topup.succeeded_at
    assert topup.bridge_withdrawal.status == Withdrawal.Status.COMPLETED
    assert available(member) == Decimal("25.00")
    assert len(airtm_credits(member)) == 1
    assert events(topup) == [
        "topup.created",
        "topup.confirmation_required",
        "topup.processing",
        "topup.succeeded",
    ]
    [credited] = balance_credits(member)
    assert credited["amount"] == "25.00"
    succeeded = topup.__class__.objects.get(pk=topup.pk)
    from offerhub.models import Event

    payload = Event.objects.get(type="topup.succeeded", aggregate_id=succeeded.public_id).payload
    assert payload["newAvailableBalance"] == "25.00" and payload["airtmPayinId"] == topup.airtm_payin_id
    audit = AuditLog.objects.filter(resource_type="TopUp", resource_id=topup.public_id).order_by("pk")
    assert list(audit.values_list("action", flat=True)) == [
        "topup.created",
        "topup.confirmation_required",
        "topup.processing",
        "topup.payin_confirmed",
        "topup.succeeded",
    ]

    # Airtm sends the confirmation again (a retry of the same message, then as a new message),
    # the member refreshes, the periodic job runs: nothing more is credited.
    confirmed = [d for d in deliveries() if d.event_type == "payin.confirmed"]
    from sandbox.models import SandboxAirtmWebhookDelivery

    sent = SandboxAirtmWebhookDelivery.objects.get(event_type="payin.confirmed", resource_id=topup.airtm_payin_id)
    assert sandbox.resend(sent, new_id=False) == 200
    assert sandbox.resend(sent, new_id=True) == 200
    assert WebhookDelivery.objects.get(pk=confirmed[0].pk).duplicates == 1
    assert topup_refresh(topup=topup).status == S.SUCCEEDED
    topups_resolve_pending()
    assert available(member) == Decimal("25.00")
    assert len(airtm_credits(member)) == 1
    assert len(balance_credits(member)) == 1
    assert events(topup).count("topup.succeeded") == 1


def test_a_confirmation_delivered_before_the_creation_is_harmless(member, sandbox):
    topup = create(member, "10.00")
    sandbox.pay(topup)
    created, confirmed = sandbox.pending_webhooks(topup)
    assert (created.event_type, confirmed.event_type) == ("payin.created", "payin.confirmed")

    assert sandbox.deliver(confirmed) == 200
    assert fresh(topup).status == S.SUCCEEDED
    assert sandbox.deliver(created) == 200  # late, and read at Airtm as what it is now: no step back
    assert fresh(topup).status == S.SUCCEEDED
    assert available(member) == Decimal("10.00")
    assert len(airtm_credits(member)) == 1


def test_refresh_alone_completes_a_paid_top_up_without_any_webhook(member, sandbox):
    topup = create(member, "12.34")
    sandbox.pay(topup)
    assert topup_refresh(topup=topup).status == S.SUCCEEDED
    assert topup_refresh(topup=topup).status == S.SUCCEEDED
    assert available(member) == Decimal("12.34")
    assert len(airtm_credits(member)) == 1


def test_the_periodic_job_completes_a_paid_top_up(member, sandbox):
    topup = create(member, "7.00")
    sandbox.pay(topup)
    assert topups_resolve_pending() == 1
    assert fresh(topup).status == S.SUCCEEDED
    topups_resolve_pending()
    assert len(airtm_credits(member)) == 1


def test_a_crash_between_receipt_and_processing_is_processed_by_the_sweeper_and_credits_once(
    member, sandbox, monkeypatch
):
    topup = create(member, "30.00")
    sandbox.pay(topup)
    monkeypatch.setattr(webhook_delivery_process, "delay", lambda pk: None)  # the queued task is lost
    assert sandbox.deliver_all(topup) == [200, 200]
    assert set(deliveries().values_list("status", flat=True)) == {WebhookDelivery.Status.RECEIVED}
    assert fresh(topup).status == S.AWAITING_USER_CONFIRMATION and available(member) == 0
    monkeypatch.undo()

    WebhookDelivery.objects.update(updated_at=F("updated_at") - timedelta(minutes=2))
    assert webhook_deliveries_sweep() == 2
    assert set(deliveries().values_list("status", flat=True)) == {WebhookDelivery.Status.PROCESSED}
    assert fresh(topup).status == S.SUCCEEDED
    WebhookDelivery.objects.update(updated_at=F("updated_at") - timedelta(minutes=2))
    assert webhook_deliveries_sweep() == 0
    assert available(member) == Decimal("30.00")
    assert len(airtm_credits(member)) == 1


def test_a_webhook_for_a_payin_that_is_not_ours_is_ignored(member, sandbox):
    from sandbox.airtm_engine import airtm_payin_create

    payin = airtm_payin_create(
        code="someone-else",
        amount_cents=500,
        description="not ours",
        items=[{"description": "x", "cents": 500, "quantity": 1}],
        confirmation_uri="https://example.test/ok",
        cancel_uri="https://example.test/no",
    )
    from sandbox.models import SandboxAirtmWebhookDelivery

    assert sandbox.deliver(SandboxAirtmWebhookDelivery.objects.get(resource_id=payin.airtm_id)) == 200
    delivery = deliveries().get()
    assert (delivery.status, delivery.note) == (WebhookDelivery.Status.IGNORED, "no top-up for this payin")


# --- lost answers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "lost",
    [
        {"timeout": True, "timeout_seconds": 1.5, "after_processing": True},
        {"status_code": 502, "after_processing": True},
    ],
    ids=["timeout", "5xx-after"],
)
def test_a_lost_answer_at_payin_creation_makes_one_payin_and_the_top_up_completes(member, sandbox, settings, lost):
    settings.OFFERHUB_AIRTM_TIMEOUT_SECONDS = 0.7
    fault(method="POST", path_contains="/payins", remaining=1, **lost)
    topup = create(member, "15.00")
    assert topup.status == S.AWAITING_USER_CONFIRMATION  # found by its code, not created again
    assert len(sandbox.payins(topup.public_id)) == 1

    sandbox.pay(topup)
    assert topup_refresh(topup=topup).status == S.SUCCEEDED
    assert available(member) == Decimal("15.00")
    assert len(airtm_credits(member)) == 1


def test_when_the_outcome_stays_unknown_the_top_up_waits_and_is_found_by_code_later(member, sandbox):
    fault(method="POST", path_contains="/payins", status_code=502, after_processing=True, remaining=1)
    look_ups = fault(method="GET", path_contains="/by-code/", status_code=503)  # every look-up fails
    topup = create(member, "20.00")
    assert topup.status == S.CREATED and not topup.airtm_payin_id and not topup.confirmation_uri
    assert events(topup) == ["topup.created"]
    assert len(sandbox.payins(topup.public_id)) == 1

    look_ups.delete()
    Topup.objects.filter(pk=topup.pk).update(created_at=F("created_at") - timedelta(minutes=2))
    topups_resolve_pending()  # finds the payin by its code: never a second one
    topup = fresh(topup)
    assert topup.status == S.AWAITING_USER_CONFIRMATION and topup.airtm_payin_id and topup.confirmation_uri
    assert len(sandbox.payins(topup.public_id)) == 1

    sandbox.pay(topup)
    topups_resolve_pending()
    assert fresh(topup).status == S.SUCCEEDED
    assert len(airtm_credits(member)) == 1


def test_a_created_top_up_that_airtm_never_received_fails_after_a_while(member, sandbox):
    fault(method="POST", path_contains="/payins", status_code=503, remaining=10)  # refused every time
    look_ups = fault(method="GET", path_contains="/by-code/", status_code=503, remaining=100)
    topup = create(member, "20.00")
    assert topup.status == S.CREATED
    look_ups.delete()
    assert topup_refresh(topup=topup).status == S.CREATED  # too early to say it never arrived
    Topup.objects.filter(pk=topup.pk).update(created_at=F("created_at") - timedelta(minutes=10))
    topup = topup_refresh(topup=topup)
    assert (topup.status, topup.error_code) == (S.FAILED, "PAYIN_NOT_FOUND")
    assert sandbox.payins(topup.public_id) == []


def test_a_definite_refusal_fails_the_top_up_and_is_raised(member, sandbox):
    fault(method="POST", path_contains="/payins", status_code=400, remaining=1)  # refused: nothing created
    with pytest.raises(ServiceError) as raised:
        create(member, "20.00")
    assert raised.value.code == "PROVIDER_ERROR"
    topup = Topup.objects.get(user=member)
    assert topup.status == S.FAILED and topup.error_code == "PROVIDER_ERROR"
    assert sandbox.payins(topup.public_id) == []
    assert events(topup) == ["topup.created", "topup.failed"]


# --- cancel, fail, expire ---------------------------------------------------------------


def test_canceled_at_the_checkout(member, sandbox):
    topup = create(member)
    sandbox.pay(topup, "cancel")
    sandbox.deliver_all(topup)
    topup = fresh(topup)
    assert (topup.status, topup.canceled_by) == (S.CANCELED, "user")
    assert events(topup)[-1] == "topup.canceled"
    assert available(member) == 0


def test_declined_at_the_checkout(member, sandbox):
    topup = create(member)
    sandbox.pay(topup, "fail")
    topup = topup_refresh(topup=topup)
    assert (topup.status, topup.error_code) == (S.FAILED, "SANDBOX_PAYIN_FAILED")
    assert topup.failure_reason == "The payment was declined (sandbox)"
    assert available(member) == 0 and airtm_credits(member) == []


def test_cancel_cancels_the_payin_at_airtm(member, sandbox):
    topup = create(member)
    topup = topup_cancel(topup=topup, actor_type="USER", actor_id=member.public_id)
    assert (topup.status, topup.canceled_by) == (S.CANCELED, "user")
    assert sandbox.payins(topup.public_id)[0].status == "CANCELED"
    with pytest.raises(ServiceError) as again:
        topup_cancel(topup=topup, actor_type="USER", actor_id=member.public_id)
    assert again.value.code == "INVALID_STATE"


def test_a_paid_top_up_cannot_be_canceled_and_the_payment_is_applied_instead(member, sandbox):
    topup = create(member)
    sandbox.pay(topup)  # paid at Airtm; we have not heard yet
    with pytest.raises(ServiceError) as refused:
        topup_cancel(topup=topup, actor_type="USER", actor_id=member.public_id)
    assert refused.value.code == "INVALID_STATE"
    assert fresh(topup).status == S.SUCCEEDED
    assert available(member) == Decimal("25.00")


def test_an_unpaid_top_up_expires_canceled_at_airtm(member, sandbox):
    topup = create(member)
    topups_resolve_pending()
    assert fresh(topup).status == S.AWAITING_USER_CONFIRMATION  # not expired yet
    Topup.objects.filter(pk=topup.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    topups_resolve_pending()
    topup = fresh(topup)
    assert (topup.status, topup.canceled_by) == (S.CANCELED, "system")
    assert sandbox.payins(topup.public_id)[0].status == "CANCELED"


def test_one_broken_top_up_does_not_stop_the_periodic_job(member, sandbox):
    broken, good = create(member, "5.00"), create(member, "6.00")
    Topup.objects.filter(pk=broken.pk).update(airtm_payin_id="no-such-payin")
    sandbox.pay(good)
    assert topups_resolve_pending() == 2
    assert fresh(broken).status == S.AWAITING_USER_CONFIRMATION
    assert fresh(good).status == S.SUCCEEDED


# --- refusals -----------------------------------------------------------------------------


def test_an_unlinked_member_cannot_top_up(sandbox):
    with pytest.raises(ServiceError) as refused:
        create(UserFactory())
    assert refused.value.code == "AIRTM_USER_NOT_LINKED"
    assert not Topup.objects.exists()


@pytest.mark.parametrize("amount", ["0.99", "10000.01"])
def test_amounts_outside_the_limits_are_refused(sandbox, amount):
    with pytest.raises(ServiceError) as refused:
        create(link(UserFactory()), amount)
    assert refused.value.code == "INVALID_AMOUNT"
    assert refused.value.details == {"min": "1.00", "max": "10000.00"}
    assert not Topup.objects.exists()


def test_the_same_request_again_returns_the_same_top_up(sandbox):
    user = link(UserFactory())
    first = create(user, principal_id="key_1", idempotency_key="k-1")
    again = create(user, principal_id="key_1", idempotency_key="k-1")
    assert again.pk == first.pk
    assert len(sandbox.payins(first.public_id)) == 1
