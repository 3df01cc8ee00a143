"""The balance events of a withdrawal's hold (docs/events.md): `balance.reserved` when a crypto or
Airtm withdrawal holds the amount, `balance.released` reason `withdrawal` when a failure returns
it; each once, none when the withdrawal is refused. Over HTTP against the sandbox chain and Airtm."""

from decimal import Decimal

import pytest
from stellar_sdk import TransactionBuilder

from offerhub.errors import ServiceError
from offerhub.models import Event
from payments.airtm_withdrawals import withdrawal_create_airtm
from payments.models import Withdrawal
from payments.stellar import horizon, usdc
from payments.tasks import airtm_withdrawals_resolve_pending, withdrawals_resolve_pending
from payments.withdrawals import withdrawal_create_crypto, withdrawal_submit
from sandbox.models import SandboxAirtmUser
from tests.payments.horizon_faults import horizon_down_once

pytestmark = pytest.mark.django_db(transaction=True)


def crypto(user, destination, amount="20.00", **extra):
    return withdrawal_create_crypto(
        user=user, amount=Decimal(amount), destination=destination, actor_type="USER", actor_id=user.public_id, **extra
    )


def airtm_withdraw(user, airtm, amount="30.00", commit=False, **extra):
    return withdrawal_create_airtm(
        user=user,
        amount=Decimal(amount),
        destination_type="airtm_balance",
        destination_ref=extra.pop("destination_ref", user.airtm_email),
        commit=commit,
        actor_type="USER",
        actor_id=user.public_id,
        airtm=airtm,
        **extra,
    )


def balance_events(user, event_type: str) -> list[Event]:
    return list(Event.objects.filter(type=event_type, aggregate_id=user.public_id).order_by("id"))


def only(user, event_type: str) -> Event:
    found = balance_events(user, event_type)
    assert len(found) == 1, [event.payload for event in found]
    event = found[0]
    assert (event.aggregate_type, event.user_id) == ("Balance", user.public_id)
    return event


def hold_payload(user, withdrawal, *, amount, reserved, available, **extra) -> dict:
    """The catalog's payload: `reserved`/`available` are (previous, new) money strings."""
    return {
        "userId": user.public_id,
        "amount": amount,
        "currency": "USD",
        "orderId": withdrawal.public_id,
        "previousReservedBalance": reserved[0],
        "newReservedBalance": reserved[1],
        "previousAvailableBalance": available[0],
        "newAvailableBalance": available[1],
        **extra,
    }


def limited_trustline(chain, limit: str = "10"):
    """An outside account whose USDC trustline takes at most `limit`: a larger payment fails on chain for good."""
    outside = chain.outside_account()
    tx = (
        TransactionBuilder(horizon().load_account(outside.public_key), chain.passphrase, base_fee=100)
        .append_change_trust_op(usdc(), limit=limit)
        .set_timeout(300)
        .build()
    )
    tx.sign(outside)
    horizon().submit_transaction(tx)
    return outside


# --- crypto ----------------------------------------------------------------------------------------


def test_crypto_withdrawal_reserves_with_one_balance_reserved_event(chain, funded_user):
    user = funded_user("100.00")
    withdrawal = crypto(user, chain.outside_account().public_key, "30.00", idempotency_key="k1", principal_id="p")
    assert withdrawal.status == Withdrawal.Status.COMPLETED
    reserved = only(user, "balance.reserved")
    assert reserved.payload == hold_payload(
        user, withdrawal, amount="30.00", reserved=("0.00", "30.00"), available=("100.00", "70.00")
    )
    assert reserved.marketplace_id == user.marketplace_id
    # Written with the withdrawal's own events, before withdrawal.created (the hold comes first).
    created = Event.objects.get(type="withdrawal.created", aggregate_id=withdrawal.public_id)
    assert reserved.id < created.id
    # Paid out, not returned: no release. A retried request and the resolver add nothing.
    assert crypto(user, withdrawal.destination_ref, "30.00", idempotency_key="k1", principal_id="p").pk == withdrawal.pk
    withdrawals_resolve_pending()
    assert len(balance_events(user, "balance.reserved")) == 1
    assert balance_events(user, "balance.released") == []


def test_second_crypto_withdrawal_reports_the_balance_the_first_left(chain, funded_user):
    user = funded_user("100.00")
    outside = chain.outside_account()
    # The first one waits in PENDING with its hold (Horizon down), so the second sees it reserved.
    horizon_down_once()
    first = crypto(user, outside.public_key, "25.00")
    assert first.status == Withdrawal.Status.PENDING
    second = crypto(user, outside.public_key, "10.50")
    first_event, second_event = balance_events(user, "balance.reserved")
    assert first_event.payload == hold_payload(
        user, first, amount="25.00", reserved=("0.00", "25.00"), available=("100.00", "75.00")
    )
    assert second_event.payload == hold_payload(
        user, second, amount="10.50", reserved=("25.00", "35.50"), available=("75.00", "64.50")
    )


@pytest.mark.parametrize(
    ("amount", "destination", "code"),
    [
        ("100.01", "outside", "INSUFFICIENT_FUNDS"),
        ("5.00", "outside", "INVALID_AMOUNT"),
        ("20.00", "not-an-address", "WITHDRAWAL_DESTINATION_INVALID"),
    ],
)
def test_refused_crypto_withdrawal_emits_no_balance_event(chain, funded_user, amount, destination, code):
    user = funded_user("100.00")
    if destination == "outside":
        destination = chain.outside_account().public_key
    with pytest.raises(ServiceError) as refused:
        crypto(user, destination, amount)
    assert refused.value.code == code
    assert (
        not Event.objects.filter(type__startswith="balance.", aggregate_id=user.public_id)
        .exclude(
            type="balance.credited"  # the deposit that funded the member
        )
        .exists()
    )
    assert not Withdrawal.objects.filter(user=user).exists()


def test_crypto_failure_for_good_releases_the_hold_with_one_event(chain, funded_user):
    user = funded_user("100.00")
    withdrawal = crypto(user, limited_trustline(chain).public_key, "20.00")
    assert withdrawal.status == Withdrawal.Status.FAILED and withdrawal.error_code == "op_line_full"
    reserved, released = only(user, "balance.reserved"), only(user, "balance.released")
    assert reserved.payload == hold_payload(
        user, withdrawal, amount="20.00", reserved=("0.00", "20.00"), available=("100.00", "80.00")
    )
    assert released.payload == hold_payload(
        user,
        withdrawal,
        amount="20.00",
        reserved=("20.00", "0.00"),
        available=("80.00", "100.00"),
        reason="withdrawal",
    )
    failed = Event.objects.get(type="withdrawal.failed", aggregate_id=withdrawal.public_id)
    assert reserved.id < failed.id < released.id  # as the Airtm path orders them
    # Settling it again (a resolver run, a resubmission) returns nothing twice.
    withdrawals_resolve_pending()
    withdrawal_submit(withdrawal=withdrawal)
    assert len(balance_events(user, "balance.released")) == 1


def test_crypto_failure_after_another_hold_reports_the_balance_around_it(chain, funded_user):
    """The released event's balances are the user's whole balance, with another withdrawal still held."""
    user = funded_user("100.00")
    outside, limited = chain.outside_account(), limited_trustline(chain)
    horizon_down_once()
    waiting = crypto(user, outside.public_key, "30.00")
    assert waiting.status == Withdrawal.Status.PENDING
    failing = crypto(user, limited.public_key, "20.00")
    assert failing.status == Withdrawal.Status.FAILED
    assert only(user, "balance.released").payload == hold_payload(
        user,
        failing,
        amount="20.00",
        reserved=("50.00", "30.00"),
        available=("50.00", "70.00"),
        reason="withdrawal",
    )


# --- Airtm -----------------------------------------------------------------------------------------


def test_airtm_withdrawal_reserves_with_one_balance_reserved_event(chain, linked, airtm):
    user = linked("100.00")
    withdrawal = airtm_withdraw(user, airtm, "30.25", idempotency_key="k2", principal_id="p")
    assert withdrawal.status == Withdrawal.Status.CREATED
    reserved = only(user, "balance.reserved")
    assert reserved.payload == hold_payload(
        user, withdrawal, amount="30.25", reserved=("0.00", "30.25"), available=("100.00", "69.75")
    )
    assert airtm_withdraw(user, airtm, "30.25", idempotency_key="k2", principal_id="p").pk == withdrawal.pk
    airtm_withdrawals_resolve_pending()
    assert len(balance_events(user, "balance.reserved")) == 1
    assert balance_events(user, "balance.released") == []


def test_airtm_refused_payout_reserves_then_releases_once(chain, linked, airtm):
    user = linked("100.00")
    SandboxAirtmUser.objects.filter(email=user.airtm_email).update(status="inactive")
    withdrawal = airtm_withdraw(user, airtm, "30.00", commit=True)
    assert withdrawal.status == Withdrawal.Status.FAILED
    assert only(user, "balance.reserved").payload == hold_payload(
        user, withdrawal, amount="30.00", reserved=("0.00", "30.00"), available=("100.00", "70.00")
    )
    assert only(user, "balance.released").payload == hold_payload(
        user,
        withdrawal,
        amount="30.00",
        reserved=("30.00", "0.00"),
        available=("70.00", "100.00"),
        reason="withdrawal",
    )


def test_refused_airtm_withdrawal_emits_no_balance_event(chain, linked, airtm):
    user = linked("50.00")
    with pytest.raises(ServiceError) as refused:
        airtm_withdraw(user, airtm, "50.01")
    assert refused.value.code == "INSUFFICIENT_FUNDS"
    assert balance_events(user, "balance.reserved") == [] and balance_events(user, "balance.released") == []
    assert not Withdrawal.objects.filter(user=user).exists()
