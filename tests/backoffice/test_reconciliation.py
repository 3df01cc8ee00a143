"""Reconciliation in the backoffice: a Support lead runs the comparison now, reads each discrepancy
in plain words (in dollars), and acknowledges or resolves a report with a note, all audited."""

import re

import pytest
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.urls import reverse

from backoffice.roles import SUPPORT_LEAD
from backoffice.services import drift_report_resolve
from escrow.models import Escrow, EscrowDriftReport
from offerhub.errors import ServiceError
from offerhub.models import AuditLog
from payments.models import ReconciliationReport, Wallet
from sandbox.models import SandboxEscrow, SandboxFault
from tests.escrow.test_lifecycle import USD, open_funded
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

WALLET_RUN = reverse("admin:payments_reconciliationreport_run")
ESCROW_RUN = reverse("admin:escrow_escrowdriftreport_run")


@pytest.fixture
def lead(client):
    user = UserFactory(is_staff=True, display_name="Leo Lead", email="lead@offerhub.test")
    user.groups.add(Group.objects.get(name=SUPPORT_LEAD))
    client.force_login(user)
    client.user = user
    return client


def notes(response) -> list[str]:
    """The messages waiting for the next page (unread ones from earlier requests first)."""
    return [str(message) for message in get_messages(response.wsgi_request)]


def text(html: str) -> str:
    """The page's words, tags removed, whitespace folded: what support reads."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def wallet_report(**amounts) -> ReconciliationReport:
    user = UserFactory(display_name="Bea Buyer", email="bea@example.test")
    wallet = Wallet.objects.create(user=user, public_key="G" + "C" * 55, encrypted_secret="x", key_version=1)
    values = {"chain_balance": 15 * USD, "ledger_balance": 10 * USD, **amounts}
    return ReconciliationReport.objects.create(
        wallet=wallet, difference=values["chain_balance"] - values["ledger_balance"], **values
    )


def change_url(report) -> str:
    opts = report._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[report.pk])


def note_url(report) -> str:
    opts = report._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_note", args=[report.pk])


def test_run_now_finds_a_wallet_drift_and_names_it_in_dollars(chain, funded_user, lead):
    user = funded_user("10.00")
    chain.mint(user.wallet.public_key, "5")  # on chain, not in the ledger

    listing = lead.get(reverse("admin:payments_reconciliationreport_changelist")).content.decode()
    assert f'action="{WALLET_RUN}"' in listing and "Run now" in listing
    response = lead.post(WALLET_RUN)
    assert response.status_code == 302
    assert notes(response) == ["Ran the wallets comparison now: 1 wallet(s) compared, 1 drifting."]
    report = ReconciliationReport.objects.get(status="OPEN")
    run = AuditLog.objects.get(action="reconciliation.run")
    assert (run.actor_type, run.actor_id, run.resource_id) == ("SUPPORT", lead.user.public_id, "wallets")
    assert run.payload_after == {"checked": 1, "drifting": 1}

    page = lead.get(change_url(report)).content.decode()
    words = text(page)
    assert (
        f"The wallet {user.wallet.public_key[:8]}\u2026 of {user.display_name} ({user.email}) holds $15.00 of USDC "
        "on chain; our ledger says $10.00 (available plus on hold): the chain has $5.00 more than the ledger "
        "records." in words
    )
    assert "150000000" not in page and "100000000" not in page and "50000000" not in page  # never stroops
    assert 'name="_save"' not in page  # read-only: acknowledge and resolve are the only actions
    assert "+$5.00" in lead.get(reverse("admin:payments_reconciliationreport_changelist")).content.decode()


def test_run_now_again_reports_the_same_drift_once_and_closes_it_when_it_is_gone(chain, funded_user, lead):
    from payments.deposits import deposits_sync

    user = funded_user("10.00")
    chain.mint(user.wallet.public_key, "5")
    lead.post(WALLET_RUN)
    lead.post(WALLET_RUN)
    assert ReconciliationReport.objects.count() == 1
    deposits_sync()  # the deposit reaches the ledger
    response = lead.post(WALLET_RUN)
    assert notes(response)[-1] == "Ran the wallets comparison now: 1 wallet(s) compared, none drifting."
    assert ReconciliationReport.objects.get().status == "RESOLVED"


def test_acknowledge_then_resolve_with_a_note_through_the_service_audited(lead):
    report = wallet_report()
    page = lead.get(change_url(report)).content.decode()
    assert f'action="{note_url(report)}"' in page and 'value="acknowledge"' in page and 'value="resolve"' in page

    empty = lead.post(note_url(report), {"note": "   ", "decision": "resolve"})
    assert empty.status_code == 200
    assert empty.context["note_form"].errors == {"note": ["This field is required."]}
    assert ReconciliationReport.objects.get().status == "OPEN"
    assert not AuditLog.objects.filter(action__startswith="reconciliation.").exists()

    seen = lead.post(note_url(report), {"note": "Checking the deposit feed", "decision": "acknowledge"})
    assert seen.status_code == 302 and seen.url == change_url(report)
    assert notes(seen) == ["Acknowledged, with your note; the audit log records it."]
    acknowledged = ReconciliationReport.objects.get()
    assert acknowledged.status == "OPEN" and acknowledged.resolved_at is None
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d UTC, Leo Lead acknowledged: Checking the deposit feed", acknowledged.note
    )
    audit = AuditLog.objects.get(action="reconciliation.acknowledged")
    assert (audit.actor_type, audit.actor_id) == ("SUPPORT", lead.user.public_id)
    assert (audit.resource_type, audit.resource_id) == ("ReconciliationReport", str(report.pk))
    assert audit.payload_after == {"status": "OPEN", "note": "Checking the deposit feed"}

    done = lead.post(note_url(report), {"note": "Adjusted by $5.00 (adj_1)", "decision": "resolve"})
    assert notes(done)[-1] == "Resolved, with your note; the audit log records it."
    resolved = ReconciliationReport.objects.get()
    assert resolved.status == "RESOLVED" and resolved.resolved_at is not None
    assert resolved.note.splitlines()[1].endswith("Leo Lead resolved: Adjusted by $5.00 (adj_1)")
    audit = AuditLog.objects.get(action="reconciliation.resolved")
    assert (audit.actor_type, audit.actor_id) == ("SUPPORT", lead.user.public_id)
    assert audit.payload_before == {"status": "OPEN"} and audit.payload_after["status"] == "RESOLVED"

    again = lead.post(note_url(report), {"note": "once more", "decision": "resolve"})
    assert again.status_code == 200 and "This report is resolved" in text(again.content.decode())
    assert AuditLog.objects.filter(action="reconciliation.resolved").count() == 1
    assert 'value="resolve"' not in lead.get(change_url(report)).content.decode()  # nothing left to do


def test_the_services_refuse_a_blank_note_and_a_closed_report():
    report = wallet_report()
    staff = UserFactory(is_staff=True)
    with pytest.raises(ServiceError) as blank:
        drift_report_resolve(report=report, note=" \n ", staff=staff)
    assert (blank.value.code, blank.value.field) == ("MISSING_REQUIRED_FIELD", "note")
    drift_report_resolve(report=report, note="fixed", staff=staff)
    with pytest.raises(ServiceError) as closed:
        drift_report_resolve(report=report, note="fixed again", staff=staff)
    assert closed.value.code == "INVALID_STATE"
    assert AuditLog.objects.filter(action="reconciliation.resolved").count() == 1


def test_a_ledger_ahead_of_the_chain_and_a_fraction_of_a_cent_are_said_plainly(lead):
    report = wallet_report(chain_balance=10 * USD, ledger_balance=10 * USD + 1)
    words = text(lead.get(change_url(report)).content.decode())
    assert "holds $10.00 of USDC on chain; our ledger says $10.0000001" in words
    assert "the ledger records $0.0000001 more than the chain holds." in words


def test_an_escrow_drift_report_names_each_difference_in_plain_words(lead):
    escrow = Escrow.objects.create(
        engagement_id="ord_words", type="multi-release", title="x", buyer=UserFactory(), seller=UserFactory(), amount=0
    )
    differences = {
        "contract": {"ours": "CABC", "chain": None},
        "balance": {"ours": "10", "chain": "15.5"},
        "flags.disputed": {"ours": False, "chain": True},
        "milestones.count": {"ours": 2, "chain": 3},
        "milestones[0].status": {"ours": "pending", "chain": "completed"},
        "milestones[1].evidence": {"ours": "", "chain": "https://example.test/proof"},
    }
    report = EscrowDriftReport.objects.create(escrow=escrow, differences=differences)
    page = lead.get(change_url(report)).content.decode()
    words = text(page)
    for sentence in (
        "The contract CABC was not found on chain.",
        "The contract holds $15.50; our record says $10.00.",
        "The escrow marked disputed: on chain yes, in our record no.",
        "The contract has 3 milestone(s); our record has 2.",
        "Milestone 1, status: on chain \u201ccompleted\u201d, in our record \u201cpending\u201d.",
        "Milestone 2, evidence: on chain \u201chttps://example.test/proof\u201d, in our record nothing.",
    ):
        assert sentence in words, sentence
    assert '"ours"' not in page and "&quot;ours&quot;" not in page  # never the raw JSON
    listing = text(lead.get(reverse("admin:escrow_escrowdriftreport_changelist")).content.decode())
    assert "The contract holds $15.50; our record says $10.00." in listing and "order ord_words" in listing


def test_run_now_for_escrows_reports_a_contract_changed_from_outside(chain, funded_user, trustless_work, lead):
    buyer, seller = funded_user("40.00"), funded_user("0")
    escrow = open_funded(buyer, seller, 10 * USD, order="ord_outside")
    outside = SandboxEscrow.objects.get(contract_id=escrow.contract_id)
    outside.balance += 5 * USD
    outside.save()

    response = lead.post(ESCROW_RUN)
    assert notes(response) == ["Ran the escrows comparison now: 1 drifting."]
    report = EscrowDriftReport.objects.get()
    assert "The contract holds $15.00; our record says $10.00." in text(lead.get(change_url(report)).content.decode())
    run = AuditLog.objects.get(action="reconciliation.run")
    assert (run.actor_id, run.resource_id, run.result) == (lead.user.public_id, "escrows", "SUCCESS")
    assert Escrow.objects.get(pk=escrow.pk).balance == 10 * USD  # reported, never "fixed"


def test_run_now_says_when_the_provider_cannot_be_read_and_audits_the_failure(chain, funded_user, trustless_work, lead):
    buyer, seller = funded_user("40.00"), funded_user("0")
    open_funded(buyer, seller, 10 * USD, order="ord_down")
    SandboxFault.objects.create(service="trustless-work", path_contains="get-escrow-by-contract-ids", status_code=400)

    response = lead.post(ESCROW_RUN)
    assert response.status_code == 302
    [message] = notes(response)
    assert message.startswith("Not run to the end: The comparison stopped:")
    assert not EscrowDriftReport.objects.exists()
    run = AuditLog.objects.get(action="reconciliation.run")
    assert (run.actor_id, run.result) == (lead.user.public_id, "FAILURE")


def test_run_now_answers_only_a_post(lead):
    assert lead.get(WALLET_RUN).status_code == 405
    assert not AuditLog.objects.exists()
