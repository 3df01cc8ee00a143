"""The step runner under failure: lost answers, crashes, 429 storms, indexer lag, tampering."""

from decimal import Decimal

import pytest
from stellar_sdk import TransactionBuilder

from escrow.client import TrustlessWorkClient
from escrow.models import Escrow, EscrowDriftReport, EscrowStep
from escrow.runner import escrow_drive
from escrow.services import escrow_fund, escrow_open
from escrow.signing import envelope_sign
from escrow.sync import escrow_sync
from offerhub.models import AuditLog
from payments.ledger import hold_reserve, hold_void, user_accounts
from payments.models import Hold
from payments.stellar import horizon, usdc
from sandbox.models import SandboxEscrow, SandboxEscrowCall, SandboxFault
from tests.escrow.test_lifecycle import USD, ledger_equals_chain, open_funded

pytestmark = pytest.mark.django_db(transaction=True)


def deployed(buyer, seller, amount: int, order: str = "ord_run") -> Escrow:
    hold_reserve(user=buyer, reference=order, amount=amount)
    escrow = escrow_open(
        engagement_id=order, buyer=buyer, seller=seller, amount=amount, title="Copywriting", hold_reference=order
    )
    escrow.refresh_from_db()
    assert escrow.status == Escrow.Status.CREATED
    return escrow


def fault(path: str, status: int, **options) -> SandboxFault:
    return SandboxFault.objects.create(service="trustless-work", path_contains=path, status_code=status, **options)


def applied(action: str) -> int:
    return SandboxEscrowCall.objects.filter(action=action, applied_at__isnull=False).count()


def fund_step(escrow: Escrow) -> EscrowStep:
    return escrow.steps.get(action=EscrowStep.Action.FUND)


def test_a_lost_answer_after_the_chain_applied_the_fund_is_settled_without_a_second_submission(
    chain, funded_user, trustless_work
):
    buyer, seller = funded_user("30.00"), funded_user("0")
    escrow = deployed(buyer, seller, 25 * USD)
    # The sandbox applies the transaction, then the answer is lost (as a crash before our commit).
    fault("send-transaction", 503, remaining=1, after_processing=True)
    escrow_fund(escrow=escrow)
    step = fund_step(escrow)
    escrow.refresh_from_db()
    assert (step.status, escrow.status) == (EscrowStep.Status.SUBMITTED, Escrow.Status.FUNDING)
    assert applied("fund") == 1 and chain.usdc(buyer.wallet.public_key) == 5
    assert Hold.objects.get(reference="ord_run").status == Hold.Status.ACTIVE  # the ledger waits for certainty

    assert escrow_drive(escrow_pk=escrow.pk) == "done"  # what the resume sweeper runs
    step.refresh_from_db()
    escrow.refresh_from_db()
    assert step.status == EscrowStep.Status.CONFIRMED and len(step.attempted_hashes) == 1
    assert escrow.status == Escrow.Status.FUNDED
    assert applied("fund") == 1 and chain.usdc(buyer.wallet.public_key) == 5
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)


def test_an_envelope_stored_but_never_sent_is_sent_once_as_it_was(chain, funded_user, trustless_work):
    buyer, seller = funded_user("30.00"), funded_user("0")
    escrow = deployed(buyer, seller, 10 * USD)
    fault("send-transaction", 503, remaining=1)
    escrow_fund(escrow=escrow)
    step = fund_step(escrow)
    assert step.status == EscrowStep.Status.SUBMITTED and applied("fund") == 0
    stored = step.tx_hash

    escrow_drive(escrow_pk=escrow.pk)
    step.refresh_from_db()
    assert step.status == EscrowStep.Status.CONFIRMED
    assert step.attempted_hashes == [stored] and step.tx_hash == stored  # the same envelope, not a new one
    assert applied("fund") == 1
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)


def test_a_429_storm_is_survived_with_one_transaction(chain, funded_user, trustless_work):
    buyer, seller = funded_user("30.00"), funded_user("0")
    escrow = deployed(buyer, seller, 10 * USD)
    fault("fund-escrow", 429, remaining=3)
    fault("send-transaction", 429, remaining=2)
    escrow_fund(escrow=escrow)  # building retries through the storm; sending is never retried blindly
    assert fund_step(escrow).status == EscrowStep.Status.SUBMITTED
    escrow_drive(escrow_pk=escrow.pk)  # still limited: looked up, then left for later
    assert fund_step(escrow).status == EscrowStep.Status.SUBMITTED
    escrow_drive(escrow_pk=escrow.pk)
    step = fund_step(escrow)
    assert step.status == EscrowStep.Status.CONFIRMED and len(step.attempted_hashes) == 1
    assert applied("fund") == 1 and chain.usdc(buyer.wallet.public_key) == 20
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)


def test_indexer_lag_after_deploy_is_recovered(chain, funded_user, trustless_work, settings):
    settings.SANDBOX_TRUSTLESS_WORK_INDEXER_LAG = True
    buyer, seller = funded_user("30.00"), funded_user("0")
    escrow = deployed(buyer, seller, 10 * USD)
    assert not SandboxEscrow.objects.get(contract_id=escrow.contract_id).indexed
    escrow_fund(escrow=escrow)  # "Escrow not found" → update-from-txHash → fund
    escrow.refresh_from_db()
    assert escrow.status == Escrow.Status.FUNDED
    assert SandboxEscrow.objects.get(contract_id=escrow.contract_id).indexed
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)


class MisbehavingTrustlessWork(TrustlessWorkClient):
    """A provider answering a fund request with a transaction for a larger amount."""

    def escrow_call(self, escrow_type, action, body):
        if action == "fund-escrow":
            body = {**body, "amount": body["amount"] + 1}
        return super().escrow_call(escrow_type, action, body)


def test_a_tampered_transaction_is_refused_recorded_and_nothing_moves(chain, funded_user, trustless_work):
    buyer, seller = funded_user("30.00"), funded_user("0")
    escrow = deployed(buyer, seller, 10 * USD)
    fault("send-transaction", 503, remaining=1)
    escrow_fund(escrow=escrow)  # stored, never sent; now let a misbehaving provider build the retry
    EscrowStep.objects.filter(pk=fund_step(escrow).pk).update(status=EscrowStep.Status.PENDING, signed_xdr="")
    escrow_drive(escrow_pk=escrow.pk, client=MisbehavingTrustlessWork(base_url=trustless_work.base_url))
    step = fund_step(escrow)
    escrow.refresh_from_db()
    assert (step.status, step.error_code) == (EscrowStep.Status.FAILED, "TAMPERED_TRANSACTION")
    assert "amount" in step.error_message
    assert escrow.status == Escrow.Status.CREATED  # funding may be asked for again
    assert AuditLog.objects.filter(action="escrow.transaction_refused", result="FAILURE").exists()
    assert applied("fund") == 0 and chain.usdc(buyer.wallet.public_key) == 30
    assert Hold.objects.get(reference="ord_run").status == Hold.Status.ACTIVE

    escrow_fund(escrow=escrow)  # an honest provider: funded with a fresh step
    escrow.refresh_from_db()
    assert escrow.status == Escrow.Status.FUNDED
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)


def test_a_fund_the_contract_refuses_keeps_the_hold_and_can_be_asked_again(chain, funded_user, trustless_work):
    buyer, seller = funded_user("30.00"), funded_user("0")
    escrow = deployed(buyer, seller, 10 * USD)
    # The buyer's USDC leaves by another door (the key used outside OfferHub): the contract refuses.
    outside = chain.outside_account()
    payment = (
        TransactionBuilder(horizon().load_account(buyer.wallet.public_key), chain.passphrase, base_fee=100)
        .append_payment_op(outside.public_key, usdc(), "25")
        .set_timeout(300)
        .build()
    )
    horizon().submit_transaction(envelope_sign(envelope=payment, signer=buyer.wallet))
    escrow_fund(escrow=escrow)
    step = fund_step(escrow)
    escrow.refresh_from_db()
    assert (step.status, step.error_code) == (EscrowStep.Status.FAILED, "ESCROW_INSUFFICIENT_FUNDS")
    assert escrow.status == Escrow.Status.CREATED
    assert Hold.objects.get(reference="ord_run").status == Hold.Status.ACTIVE
    assert user_accounts(buyer)[1].balance == 10 * USD

    chain.mint(buyer.wallet.public_key, "25")  # the money is back (a deposit the watcher has not seen yet)
    escrow_fund(escrow=escrow)
    escrow.refresh_from_db()
    assert escrow.status == Escrow.Status.FUNDED
    assert [s.status for s in escrow.steps.filter(action="fund-escrow")] == ["FAILED", "CONFIRMED"]
    assert user_accounts(buyer)[1].balance == 0


@pytest.mark.parametrize(
    ("voided", "code"), [(None, "RESERVE_NOT_FOUND"), (4 * USD, "RESERVE_MISMATCH_AMOUNT")], ids=["gone", "short"]
)
def test_the_fund_step_signs_nothing_when_the_hold_is_gone_or_short(chain, funded_user, trustless_work, voided, code):
    """The money for the escrow must still be held for it: otherwise the funding would land
    on chain with nothing in the ledger to post (the money was spent on another hold)."""
    buyer, seller = funded_user("10.00"), funded_user("0")
    escrow = deployed(buyer, seller, 10 * USD, order="ord_gone")
    hold_void(user=buyer, reference="ord_gone", amount=voided)  # the state left by an outside void
    freed = 10 * USD if voided is None else voided
    hold_reserve(user=buyer, reference="ord_other", amount=freed)  # …and the freed money held again
    escrow_fund(escrow=escrow)
    step = fund_step(escrow)
    escrow.refresh_from_db()
    assert (step.status, step.error_code) == (EscrowStep.Status.FAILED, code)
    assert not step.attempted_hashes and not step.signed_xdr  # nothing signed, nothing sent
    assert applied("fund") == 0 and chain.usdc(buyer.wallet.public_key) == 10
    assert escrow.status == Escrow.Status.CREATED and escrow.balance == 0
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)


def test_deduct_reserved_posts_a_funding_the_chain_confirmed(chain, funded_user, trustless_work, auth_client):
    buyer, seller = funded_user("30.00"), funded_user("0")
    escrow = deployed(buyer, seller, 10 * USD, order="ord_deduct")
    fault("send-transaction", 503, remaining=1, after_processing=True)
    escrow_fund(escrow=escrow)  # on chain, answer lost: the hold is still active
    client = auth_client(scopes=["read", "support"])
    path = f"/api/v1/users/{buyer.public_id}/balance/deduct-reserved"
    wrong = client.post(path, {"amount": "9.00", "orderId": "ord_deduct"}, format="json", HTTP_IDEMPOTENCY_KEY="w")
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "RESERVE_MISMATCH_AMOUNT"
    response = client.post(path, {"amount": "10.00", "orderId": "ord_deduct"}, format="json", HTTP_IDEMPOTENCY_KEY="d")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["operation"] == "DEDUCT_RESERVED" and body["newBalance"]["reserved"] == "0.00"
    escrow.refresh_from_db()
    assert escrow.status == Escrow.Status.FUNDED and applied("fund") == 1
    again = client.post(path, {"amount": "10.00", "orderId": "ord_deduct"}, format="json", HTTP_IDEMPOTENCY_KEY="d2")
    assert again.status_code == 404  # the hold is in escrow now: nothing left to deduct
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)


def test_sync_reports_drift_and_never_moves_money(chain, funded_user, trustless_work):
    buyer, seller = funded_user("40.00"), funded_user("0")
    escrow = open_funded(buyer, seller, 10 * USD, order="ord_sync")
    assert escrow_sync() == 0 and not EscrowDriftReport.objects.exists()
    # Someone funds the contract from outside OfferHub: the balance differs from our record.
    outside = SandboxEscrow.objects.get(contract_id=escrow.contract_id)
    outside.balance += 5 * USD
    outside.save()
    assert escrow_sync() == 1
    report = EscrowDriftReport.objects.get()
    assert report.differences["balance"] == {"ours": "10", "chain": "15"}
    escrow.refresh_from_db()
    assert escrow.balance == 10 * USD and escrow.status == Escrow.Status.FUNDED  # reported, not "fixed"
    assert escrow_sync() == 1 and EscrowDriftReport.objects.count() == 1  # one open report, updated
    outside.balance -= 5 * USD
    outside.save()
    assert escrow_sync() == 0
    assert EscrowDriftReport.objects.get().status == "RESOLVED"
    assert Decimal(trustless_work.get_escrows([escrow.contract_id])[0]["balance"]) == 10
