"""Whole escrow lifecycles over HTTP against the sandbox, with ledger and chain equal at each step."""

from decimal import Decimal

import pytest

from escrow.models import Escrow, EscrowStep
from escrow.services import (
    escrow_dispute,
    escrow_fees,
    escrow_fund,
    escrow_milestone_mark,
    escrow_open,
    escrow_refund,
    escrow_release,
    escrow_resolve,
)
from payments.ledger import hold_reserve, ledger_account, user_accounts
from payments.models import Hold, LedgerAccount, PlatformAccount
from payments.stellar import account_load
from sandbox.escrow import TRUSTLESS_WORK_FEE_ACCOUNT

pytestmark = pytest.mark.django_db(transaction=True)
Kind = LedgerAccount.Kind
USD = 10_000_000  # stroops per dollar


def dollars(stroops: int) -> Decimal:
    return Decimal(stroops) / USD


def ledger_equals_chain(chain, client, escrow: Escrow, *users) -> None:
    """Every party's wallet, the contract and the fee accounts agree with the ledger to the stroop."""
    for user in users:
        available, held = user_accounts(user)
        assert chain.usdc(user.wallet.public_key) == dollars(available.balance + held.balance), user
    escrow.refresh_from_db()
    if escrow.contract_id:
        (on_chain,) = client.get_escrows([escrow.contract_id])
        assert on_chain["balance"] == dollars(ledger_account(kind=Kind.ESCROW, reference=escrow.engagement_id).balance)
        assert on_chain["balance"] == dollars(escrow.balance)
    platform = PlatformAccount.objects.get().public_key
    assert usdc_or_zero(chain, platform) == dollars(ledger_account(kind=Kind.PLATFORM_FEE).balance)
    trustless_work_fees = ledger_account(kind=Kind.TRUSTLESS_WORK_FEE).balance
    assert usdc_or_zero(chain, TRUSTLESS_WORK_FEE_ACCOUNT) == dollars(trustless_work_fees)


def usdc_or_zero(chain, account_id: str) -> Decimal:
    return (chain.usdc(account_id) or 0) if account_load(account_id) else Decimal(0)


def open_funded(buyer, seller, amount: int, *, order: str = "ord_test", milestones=None) -> Escrow:
    hold_reserve(user=buyer, reference=order, amount=amount)
    escrow = escrow_open(
        engagement_id=order,
        buyer=buyer,
        seller=seller,
        amount=amount,
        title="Logo design",
        description="Three concepts",
        hold_reference=order,
        milestones=milestones,
    )
    escrow.refresh_from_db()
    assert escrow.status == Escrow.Status.CREATED and escrow.contract_id
    escrow_fund(escrow=escrow)
    escrow.refresh_from_db()
    assert escrow.status == Escrow.Status.FUNDED
    return escrow


def test_single_release_from_deploy_to_release(chain, funded_user, trustless_work):
    buyer, seller = funded_user("50.00"), funded_user("0")
    amount = 30 * USD
    hold_reserve(user=buyer, reference="ord_single", amount=amount)
    escrow = escrow_open(
        engagement_id="ord_single",
        buyer=buyer,
        seller=seller,
        amount=amount,
        title="Logo design",
        hold_reference="ord_single",
    )
    escrow.refresh_from_db()
    assert escrow.status == Escrow.Status.CREATED
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)

    escrow_fund(escrow=escrow)
    escrow.refresh_from_db()
    assert (escrow.status, escrow.balance, escrow.funded_at is not None) == (Escrow.Status.FUNDED, amount, True)
    assert Hold.objects.get(reference="ord_single").status == Hold.Status.POSTED
    assert chain.usdc(buyer.wallet.public_key) == 20
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)

    escrow_milestone_mark(escrow=escrow, index=0, evidence="https://example.com/logo.png")
    (on_chain,) = trustless_work.get_escrows([escrow.contract_id])
    assert on_chain["milestones"][0]["status"] == "completed"
    assert on_chain["milestones"][0]["evidence"] == "https://example.com/logo.png"

    escrow_release(escrow=escrow)
    escrow.refresh_from_db()
    fees = escrow_fees(amount=amount, platform_fee_percent=Decimal("5"))
    assert escrow.status == Escrow.Status.RELEASED and escrow.balance == 0
    assert chain.usdc(seller.wallet.public_key) == dollars(fees.net) == Decimal("28.41")
    assert user_accounts(seller)[0].balance == fees.net
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)
    assert [s.action for s in escrow.steps.all()] == [
        "deploy",
        "fund-escrow",
        "change-milestone-status",
        "approve-milestone",
        "release-funds",
    ]
    assert all(s.status == EscrowStep.Status.CONFIRMED and s.tx_hash for s in escrow.steps.all())


def test_multi_release_pays_each_milestone_on_its_own(chain, funded_user, trustless_work):
    buyer, seller = funded_user("100.00"), funded_user("0")
    milestones = [
        {"ref": "m1", "title": "Sketches", "amount": 10 * USD},
        {"ref": "m2", "title": "Final files", "amount": 2001 * USD // 100},
    ]
    escrow = open_funded(buyer, seller, 3001 * USD // 100, order="ord_multi", milestones=milestones)
    assert escrow.type == Escrow.Type.MULTI
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)

    escrow_release(escrow=escrow, index=0)
    escrow.refresh_from_db()
    assert escrow.status == Escrow.Status.FUNDED and escrow.balance == 2001 * USD // 100
    first = escrow_fees(amount=10 * USD, platform_fee_percent=Decimal("5")).net
    assert user_accounts(seller)[0].balance == first
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)

    escrow_release(escrow=escrow, index=1)
    escrow.refresh_from_db()
    second = escrow_fees(amount=2001 * USD // 100, platform_fee_percent=Decimal("5")).net
    assert escrow.status == Escrow.Status.RELEASED
    assert user_accounts(seller)[0].balance == first + second
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)


def test_dispute_then_split_pays_each_side_net_of_its_fees(chain, funded_user, trustless_work):
    buyer, seller = funded_user("40.00"), funded_user("0")
    escrow = open_funded(buyer, seller, 40 * USD, order="ord_split")
    escrow_dispute(escrow=escrow, opened_by="buyer")
    escrow.refresh_from_db()
    assert escrow.status == Escrow.Status.DISPUTED and escrow.flags["disputed"]
    (on_chain,) = trustless_work.get_escrows([escrow.contract_id])
    assert on_chain["flags"]["disputed"] is True

    escrow_resolve(escrow=escrow, seller_amount=15 * USD, buyer_amount=25 * USD)
    escrow.refresh_from_db()
    assert escrow.status == Escrow.Status.RELEASED and escrow.flags["resolved"]
    rate = Decimal("5")
    assert user_accounts(seller)[0].balance == escrow_fees(amount=15 * USD, platform_fee_percent=rate).net
    assert user_accounts(buyer)[0].balance == escrow_fees(amount=25 * USD, platform_fee_percent=rate).net
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)


def test_refund_is_a_seller_dispute_resolved_for_the_buyer(chain, funded_user, trustless_work):
    buyer, seller = funded_user("20.00"), funded_user("0")
    escrow = open_funded(buyer, seller, 20 * USD, order="ord_refund")
    escrow_refund(escrow=escrow)
    escrow.refresh_from_db()
    assert escrow.status == Escrow.Status.REFUNDED and escrow.refunded_at is not None
    assert [s.action for s in escrow.steps.all()][-2:] == ["dispute-escrow", "resolve-dispute"]
    assert user_accounts(buyer)[0].balance == escrow_fees(amount=20 * USD, platform_fee_percent=Decimal("5")).net
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)


def test_fee_arithmetic_is_exact_for_awkward_amounts():
    fees = escrow_fees(amount=1_000_100_000, platform_fee_percent=Decimal("5"))  # 100.01 at 5 %
    assert (fees.trustless_work, fees.platform, fees.net) == (3_000_300, 50_005_000, 947_094_700)
    odd = escrow_fees(amount=1, platform_fee_percent=Decimal("2.5"))
    assert (odd.trustless_work, odd.platform, odd.net) == (0, 0, 1)
    thirds = escrow_fees(amount=333_333_333, platform_fee_percent=Decimal("33.33"))
    assert thirds.trustless_work + thirds.platform + thirds.net == 333_333_333
    assert thirds.platform == 111_099_999  # rounded down, never up
