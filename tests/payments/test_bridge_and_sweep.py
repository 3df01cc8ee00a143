"""The two chain legs of the Airtm rail, over HTTP against the sandbox chain.

Bridge: a confirmed top-up's dollars become USDC in the user's own wallet, paid by the
platform treasury and credited once. Sweep: once Airtm has paid a withdrawal in dollars,
the held USDC moves from the user's wallet to the treasury and the hold is posted once.
"""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from offerhub.models import Event
from payments.deposits import deposits_sync
from payments.history import history_page
from payments.ledger import hold_reserve, ledger_account, user_accounts
from payments.models import Hold, JournalEntry, LedgerAccount, Withdrawal
from payments.tasks import withdrawals_resolve_pending
from payments.wallets import platform_account
from payments.withdrawals import bridge_pay, withdrawal_sweep
from sandbox.models import SandboxFault, SandboxPayment
from tests.payments.horizon_faults import horizon_down_once

pytestmark = pytest.mark.django_db(transaction=True)

DOLLAR = 10_000_000


def balances(user) -> tuple[int, int]:
    available, held = user_accounts(user)
    return available.balance, held.balance


def external(kind) -> int:
    return ledger_account(kind=kind).balance


def usdc_payments_to(address: str) -> int:
    return SandboxPayment.objects.filter(to_account=address, asset_code="USDC").count()


def test_a_bridge_pays_the_wallet_and_credits_once(chain, funded_user):
    user = funded_user("0")
    bridge = bridge_pay(user=user, amount=50 * DOLLAR, reference="topup_once")
    assert bridge.status == Withdrawal.Status.COMPLETED and bridge.purpose == Withdrawal.Purpose.BRIDGE
    assert chain.usdc(user.wallet.public_key) == 50
    assert balances(user) == (50 * DOLLAR, 0)
    assert external(LedgerAccount.Kind.EXTERNAL_AIRTM) == -50 * DOLLAR

    # Asked again (a webhook, a refresh, the reconciler), and the deposit watcher reads the chain.
    again = bridge_pay(user=user, amount=50 * DOLLAR, reference="topup_once")
    deposits_sync()
    assert again.pk == bridge.pk
    assert usdc_payments_to(user.wallet.public_key) == 1
    assert balances(user) == (50 * DOLLAR, 0)
    assert JournalEntry.objects.filter(kind="topup").count() == 1
    credited = Event.objects.get(type="balance.credited", aggregate_id=user.public_id)
    assert credited.payload["source"] == "topup" and credited.payload["sourceId"] == "topup_once"
    assert credited.payload["newAvailableBalance"] == "50.00"
    row = history_page(user=user, page_number=1).rows[0]
    assert (row.label, row.direction, row.amount) == ("Added with Airtm", "in", Decimal("50.00"))
    assert row.detail == "Top-up topup_once, paid at Airtm."


def test_a_bridge_whose_answer_is_lost_is_credited_once_as_a_topup_not_by_the_watcher(chain, funded_user, settings):
    user = funded_user("0")
    settings.HORIZON_TIMEOUT_SECONDS = 1
    SandboxFault.objects.create(
        service="horizon",
        method="POST",
        path_contains="/transactions",
        after_processing=True,
        timeout=True,
        timeout_seconds=1.5,
        remaining=1,
    )
    bridge = bridge_pay(user=user, amount=20 * DOLLAR, reference="topup_lost")
    assert bridge.status == Withdrawal.Status.PENDING
    deposits_sync()  # the watcher sees the landed payment and leaves it to the bridge
    assert balances(user) == (0, 0)
    withdrawals_resolve_pending()
    bridge = Withdrawal.objects.get(pk=bridge.pk)
    assert bridge.status == Withdrawal.Status.COMPLETED
    deposits_sync()
    assert usdc_payments_to(user.wallet.public_key) == 1
    assert balances(user) == (20 * DOLLAR, 0)
    assert external(LedgerAccount.Kind.EXTERNAL_AIRTM) == -20 * DOLLAR
    assert external(LedgerAccount.Kind.EXTERNAL_STELLAR) == 0
    credited = Event.objects.filter(type="balance.credited", aggregate_id=user.public_id)
    assert [event.payload["source"] for event in credited] == ["topup"]


def test_a_bridge_whose_sequence_was_taken_is_signed_anew_at_once(chain, funded_user):
    """Another transaction of the platform account (a wallet activation) takes the sequence
    number of the bridge's stored envelope: that envelope can never land, so it is replaced."""
    user = funded_user("0")
    horizon_down_once()
    bridge = bridge_pay(user=user, amount=15 * DOLLAR, reference="topup_seq")
    assert bridge.status == Withdrawal.Status.PENDING and len(bridge.attempted_hashes) == 1
    funded_user("0")  # a new member's wallet activation, signed by the platform account
    withdrawals_resolve_pending()
    bridge = Withdrawal.objects.get(pk=bridge.pk)
    assert bridge.status == Withdrawal.Status.COMPLETED and len(bridge.attempted_hashes) == 2
    assert usdc_payments_to(user.wallet.public_key) == 1
    assert balances(user) == (15 * DOLLAR, 0)


def test_a_treasury_short_of_usdc_waits_and_pays_once_refilled(chain, funded_user, settings):
    settings.SANDBOX_PROVIDERS = [name for name in settings.SANDBOX_PROVIDERS if name != "stellar"]  # no faucet
    user = funded_user("0")
    bridge = bridge_pay(user=user, amount=30 * DOLLAR, reference="topup_short")
    assert bridge.status == Withdrawal.Status.PENDING
    assert bridge.error_code == "op_underfunded" and "treasury" in bridge.failure_reason
    assert balances(user) == (0, 0)

    chain.mint(platform_account().public_key, "30")
    withdrawals_resolve_pending()  # within the back-off: nothing is signed again yet
    assert Withdrawal.objects.get(pk=bridge.pk).status == Withdrawal.Status.PENDING
    Withdrawal.objects.filter(pk=bridge.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    withdrawals_resolve_pending()
    bridge = Withdrawal.objects.get(pk=bridge.pk)
    assert bridge.status == Withdrawal.Status.COMPLETED and len(bridge.attempted_hashes) == 2
    assert balances(user) == (30 * DOLLAR, 0)
    assert chain.usdc(user.wallet.public_key) == 30


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_concurrent_bridges_for_one_topup_pay_once(chain, funded_user):
    user = funded_user("0")
    errors = []

    def pay():
        try:
            bridge_pay(user=user, amount=10 * DOLLAR, reference="topup_race")
        except Exception as error:  # collected: a thread's failure must fail the test
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=pay) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    withdrawals_resolve_pending()
    assert Withdrawal.objects.filter(purpose=Withdrawal.Purpose.BRIDGE).count() == 1
    assert usdc_payments_to(user.wallet.public_key) == 1
    assert balances(user) == (10 * DOLLAR, 0)


def airtm_withdrawal(user, amount: int) -> Withdrawal:
    """An Airtm withdrawal as its service leaves it once Airtm has paid: held, committed."""
    withdrawal = Withdrawal.objects.create(
        user=user,
        amount=amount,
        destination_type=Withdrawal.DestinationType.BANK,
        destination_ref="ana@airtm.sandbox",
        airtm_payout_id="po_paid",
        committed=True,
    )
    hold_reserve(user=user, reference=withdrawal.hold_reference, amount=amount, owner=Hold.Owner.PAYMENT)
    return withdrawal


def test_a_sweep_moves_the_held_usdc_to_the_treasury_once(chain, funded_user):
    user = funded_user("100.00")
    treasury = platform_account().public_key
    before, payments_before = chain.usdc(treasury), usdc_payments_to(treasury)
    withdrawal = withdrawal_sweep(withdrawal=airtm_withdrawal(user, 30 * DOLLAR))
    assert withdrawal.status == Withdrawal.Status.COMPLETED
    assert chain.usdc(user.wallet.public_key) == 70 and chain.usdc(treasury) == before + 30
    assert balances(user) == (70 * DOLLAR, 0)
    assert external(LedgerAccount.Kind.EXTERNAL_AIRTM) == 30 * DOLLAR
    assert Hold.objects.get(reference=withdrawal.public_id).status == Hold.Status.POSTED
    completed = Event.objects.get(type="withdrawal.completed", aggregate_id=withdrawal.public_id)
    assert completed.payload["airtmPayoutId"] == "po_paid"
    assert completed.payload["transactionHash"] == withdrawal.transaction_hash

    assert withdrawal_sweep(withdrawal=withdrawal).status == Withdrawal.Status.COMPLETED
    assert usdc_payments_to(treasury) == payments_before + 1
    assert balances(user) == (70 * DOLLAR, 0)


def test_a_sweep_that_cannot_reach_the_chain_keeps_the_hold_and_sends_the_same_envelope(chain, funded_user):
    """Airtm has already paid the dollars: the hold stays until the USDC moves."""
    user = funded_user("100.00")
    horizon_down_once()
    withdrawal = withdrawal_sweep(withdrawal=airtm_withdrawal(user, 40 * DOLLAR))
    assert withdrawal.status == Withdrawal.Status.PENDING
    assert withdrawal.failure_reason.startswith("Waiting for Stellar")  # said, though it was PENDING already
    assert balances(user) == (60 * DOLLAR, 40 * DOLLAR)
    withdrawal = withdrawal_sweep(withdrawal=withdrawal)
    assert withdrawal.status == Withdrawal.Status.COMPLETED and len(withdrawal.attempted_hashes) == 1
    assert balances(user) == (60 * DOLLAR, 0)
    assert chain.usdc(user.wallet.public_key) == 60
