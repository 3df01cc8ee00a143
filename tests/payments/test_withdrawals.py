"""Crypto withdrawals over HTTP against the sandbox chain."""

import threading
from decimal import Decimal

import pytest
from django.db import connection

from offerhub.errors import ServiceError
from offerhub.models import Event
from payments.ledger import user_accounts
from payments.models import Hold, Withdrawal
from payments.tasks import withdrawals_resolve_pending
from payments.withdrawals import withdrawal_create_crypto
from sandbox.models import SandboxFault, SandboxPayment
from tests.payments.horizon_faults import horizon_down_once

pytestmark = pytest.mark.django_db(transaction=True)


def withdraw(user, destination, amount="20.00", **extra):
    return withdrawal_create_crypto(
        user=user,
        amount=Decimal(amount),
        destination=destination,
        actor_type="USER",
        actor_id=user.public_id,
        **extra,
    )


def balances(user) -> tuple[int, int]:
    available, held = user_accounts(user)
    return available.balance, held.balance


def assert_ledger_mirrors_chain(chain, user):
    available, held = balances(user)
    assert chain.usdc(user.wallet.public_key) * 10_000_000 == available + held


def test_withdrawal_pays_the_address_and_posts_the_hold(chain, funded_user):
    user = funded_user("100.00")
    outside = chain.outside_account()
    withdrawal = withdraw(user, outside.public_key, "30.00", memo="invoice 42")
    assert withdrawal.status == Withdrawal.Status.COMPLETED
    assert withdrawal.committed and len(withdrawal.transaction_hash) == 64
    assert chain.usdc(outside.public_key) == Decimal("30")
    assert balances(user) == (700_000_000, 0)
    assert Hold.objects.get(reference=withdrawal.public_id).status == Hold.Status.POSTED
    assert_ledger_mirrors_chain(chain, user)
    types = list(Event.objects.filter(aggregate_id=withdrawal.public_id).values_list("type", flat=True))
    assert types == ["withdrawal.created", "withdrawal.completed"]


@pytest.mark.parametrize(
    ("destination", "message"),
    [
        ("not-an-address", "not a valid Stellar address"),
        ("GAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCWN7", "No Stellar account exists at this address"),
    ],
)
def test_bad_destinations_fail_cleanly(chain, funded_user, destination, message):
    user = funded_user("50.00")
    with pytest.raises(ServiceError) as error:
        withdraw(user, destination)
    assert error.value.code == "WITHDRAWAL_DESTINATION_INVALID"
    assert message in error.value.message and error.value.field == "destinationRef"
    assert balances(user) == (500_000_000, 0)
    assert not Withdrawal.objects.exists()


def test_address_without_usdc_trustline_fails_cleanly(chain, funded_user):
    user = funded_user("50.00")
    no_trust = chain.outside_account(trustline=False)
    with pytest.raises(ServiceError) as error:
        withdraw(user, no_trust.public_key)
    assert "cannot receive USDC yet" in error.value.message
    assert balances(user) == (500_000_000, 0)
    assert not Hold.objects.exists()


def test_limits_and_balance_are_checked_before_anything_moves(chain, funded_user):
    user = funded_user("15.00")
    outside = chain.outside_account()
    with pytest.raises(ServiceError) as error:
        withdraw(user, outside.public_key, "5.00")
    assert error.value.code == "INVALID_AMOUNT" and error.value.details == {"min": "10.00", "max": "5000.00"}
    with pytest.raises(ServiceError) as error:
        withdraw(user, outside.public_key, "15.01")
    assert error.value.code == "INSUFFICIENT_FUNDS" and error.value.details["available"] == "15.00"
    assert balances(user) == (150_000_000, 0)


def horizon_answer_lost_once() -> None:
    """The next submission is applied on the chain, but its answer never reaches us (a timeout)."""
    SandboxFault.objects.create(
        service="horizon",
        method="POST",
        path_contains="/transactions",
        after_processing=True,
        timeout=True,
        timeout_seconds=1.5,
        remaining=1,
    )


def test_horizon_timeout_after_the_payment_landed_never_sends_twice(chain, funded_user, settings):
    user = funded_user("100.00")
    outside = chain.outside_account()
    settings.HORIZON_TIMEOUT_SECONDS = 1
    # The payment is applied, but the answer never reaches us.
    horizon_answer_lost_once()
    withdrawal = withdraw(user, outside.public_key, "40.00")
    assert withdrawal.status == Withdrawal.Status.PENDING
    assert balances(user) == (600_000_000, 400_000_000)  # still held, nothing lost
    assert withdrawals_resolve_pending() == 1
    withdrawal = Withdrawal.objects.get(pk=withdrawal.pk)
    assert withdrawal.status == Withdrawal.Status.COMPLETED
    assert SandboxPayment.objects.filter(to_account=outside.public_key, asset_code="USDC").count() == 1
    assert chain.usdc(outside.public_key) == Decimal("40")
    assert balances(user) == (600_000_000, 0)
    assert_ledger_mirrors_chain(chain, user)


def test_horizon_down_before_the_payment_resends_the_same_envelope_once(chain, funded_user):
    user = funded_user("100.00")
    outside = chain.outside_account()
    horizon_down_once()
    withdrawal = withdraw(user, outside.public_key, "25.00")
    assert withdrawal.status == Withdrawal.Status.PENDING
    first_hash = withdrawal.transaction_hash
    withdrawals_resolve_pending()
    withdrawal = Withdrawal.objects.get(pk=withdrawal.pk)
    assert withdrawal.status == Withdrawal.Status.COMPLETED
    assert withdrawal.transaction_hash == first_hash  # the signed envelope was reused, not re-signed
    assert SandboxPayment.objects.filter(to_account=outside.public_key, asset_code="USDC").count() == 1
    assert_ledger_mirrors_chain(chain, user)


def test_a_final_chain_failure_returns_the_hold(chain, funded_user):
    """The destination trusts USDC but only up to 10: the network refuses the payment."""
    from stellar_sdk import TransactionBuilder

    from payments.stellar import horizon, usdc

    user = funded_user("100.00")
    outside = chain.outside_account()
    tx = (
        TransactionBuilder(horizon().load_account(outside.public_key), chain.passphrase, base_fee=100)
        .append_change_trust_op(usdc(), limit="10")
        .set_timeout(300)
        .build()
    )
    tx.sign(outside)
    horizon().submit_transaction(tx)
    withdrawal = withdraw(user, outside.public_key, "20.00")
    assert withdrawal.status == Withdrawal.Status.FAILED
    assert withdrawal.error_code == "op_line_full"
    assert "cannot receive this much" in withdrawal.failure_reason
    assert balances(user) == (1_000_000_000, 0)  # the hold went back
    assert Hold.objects.get(reference=withdrawal.public_id).status == Hold.Status.VOIDED
    assert chain.usdc(outside.public_key) == 0
    assert_ledger_mirrors_chain(chain, user)
    assert Event.objects.filter(type="withdrawal.failed", aggregate_id=withdrawal.public_id).exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_twenty_concurrent_withdrawals_never_overdraw(chain, funded_user):
    user = funded_user("100.00")  # room for exactly 5 withdrawals of 20
    outside = chain.outside_account()
    barrier = threading.Barrier(20)
    outcomes: list[str] = []

    def run():
        try:
            barrier.wait()
            outcomes.append(withdraw(user, outside.public_key, "20.00").status)
        except ServiceError as error:
            outcomes.append(error.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(outcomes) == sorted([Withdrawal.Status.COMPLETED] * 5 + ["INSUFFICIENT_FUNDS"] * 15)
    assert balances(user) == (0, 0)
    assert chain.usdc(outside.public_key) == Decimal("100")
    assert_ledger_mirrors_chain(chain, user)


def test_a_resent_payment_refused_inside_its_fee_bump_after_it_landed_is_looked_up_not_failed(
    chain, funded_user, settings
):
    """The answer is lost; the resend goes out after the payment landed but before Horizon
    ingested it: core refuses the fee bump (tx_fee_bump_inner_failed, inner tx_bad_seq)."""
    user = funded_user("100.00")
    outside = chain.outside_account()
    settings.HORIZON_TIMEOUT_SECONDS = 1
    horizon_answer_lost_once()
    withdrawal = withdraw(user, outside.public_key, "40.00")
    assert withdrawal.status == Withdrawal.Status.PENDING
    settings.SANDBOX_HORIZON_INGEST_LAG = True
    # Horizon does not know the transaction yet at the first lookup.
    SandboxFault.objects.create(
        service="horizon", method="GET", path_contains="/transactions/", status_code=404, remaining=1
    )
    assert withdrawals_resolve_pending() == 1
    withdrawal = Withdrawal.objects.get(pk=withdrawal.pk)
    assert withdrawal.status == Withdrawal.Status.COMPLETED
    assert len(withdrawal.attempted_hashes) == 1
    assert SandboxPayment.objects.filter(to_account=outside.public_key, asset_code="USDC").count() == 1
    assert balances(user) == (600_000_000, 0)
    assert_ledger_mirrors_chain(chain, user)
