"""Edges of the dispute case a review found: a dispute opened while a payout is on its way, the
outcome after a withdrawn case, an agent who is a party, odd evidence file names through the
API, staff without the dispute permission, and the inspection window after a withdrawal."""

import base64
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from backoffice.roles import SUPPORT_AGENT
from disputes.models import Dispute, DisputeEvidence, Party
from disputes.services import dispute_assign, dispute_evidence_add, dispute_message_post, dispute_open, dispute_withdraw
from escrow.models import Escrow
from escrow.runner import escrow_drive
from escrow.services import escrow_fees
from marketplace.models import Order
from marketplace.orders import OrderActor, orders_release_inspected
from offerhub.errors import ServiceError
from offerhub.money import money_dollars
from payments.ledger import user_accounts
from sandbox.models import SandboxFault
from tests.escrow.test_lifecycle import USD, ledger_equals_chain
from tests.escrow.test_step_runner import fault
from tests.factories import UserFactory
from tests.marketplace.test_dispute_case_api import disputed, post
from tests.marketplace.test_dispute_case_pages import a_case
from tests.marketplace.test_order_pages import logged_in
from tests.marketplace.test_orders_api import in_progress

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(64))


def _case(opened: dict) -> Dispute:
    return Dispute.objects.select_related("order__buyer", "order__seller").get(public_id=opened["id"])


@pytest.mark.django_db(transaction=True)
def test_outcome_counts_only_the_decided_payout_not_an_earlier_resolver_paid_milestone(
    chain, funded_user, trustless_work, writer, support
):
    """disputes/case_page.py _shares reads escrow_resolution_payouts(), which sums every RESOLVE /
    RESOLVE_MILESTONE step of the escrow. After a withdrawn dispute a milestone release is paid by
    the resolver (a RESOLVE_MILESTONE step), so when the case is opened again and split, the
    seller's outcome adds that earlier milestone's net to the split's: net > gross, fees < 0."""
    buyer, seller = funded_user("100.00"), funded_user("0")
    milestones = [
        {"ref": "draft", "description": "Draft", "amount": "10.00"},
        {"ref": "final", "description": "Final", "amount": "20.00"},
    ]
    opened = disputed(writer, buyer, seller, milestones=milestones)
    dispute_withdraw(dispute=_case(opened), party=Party.BUYER, actor=OrderActor.for_user(buyer))
    path = f"/orders/{opened['orderId']}"
    assert post(writer, f"{path}/milestones/draft/complete").status_code == 201
    assert post(writer, f"{path}/milestones/draft/release").status_code == 200  # paid by the resolver

    dispute_open(order=Order.objects.get(), actor=OrderActor.for_user(buyer), opened_by="BUYER", reason="OTHER")
    assert post(support, f"/disputes/{opened['id']}/assign", {"assignedTo": "ana"}).status_code == 200
    split = {"decision": "SPLIT", "releaseAmount": "5.00", "refundAmount": "15.00"}
    resolved = post(support, f"/disputes/{opened['id']}/resolve", split)
    assert resolved.status_code == 200, resolved.content
    assert Order.objects.get().status == Order.Status.CLOSED

    percent = Escrow.objects.get().platform_fee_percent
    split_net = escrow_fees(amount=5 * USD, platform_fee_percent=percent).net
    draft_net = escrow_fees(amount=10 * USD, platform_fee_percent=percent).net
    assert user_accounts(seller)[0].balance == draft_net + split_net  # the money itself is right

    page = logged_in(seller).get(f"/orders/{opened['orderId']}/").content.decode()
    fees = 5 - money_dollars(split_net)
    assert f"You received <strong>${money_dollars(split_net)}</strong> after escrow fees of ${fees}" in page, [
        line.strip() for line in page.splitlines() if "dispute-share-seller" in line or "You received" in line
    ]


# --- The API's evidence file name -------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("name", [".", "..", "/", "dir/"])
def test_an_evidence_file_name_without_a_base_name_is_a_400_not_a_500(writer, name, settings, tmp_path):
    """disputes/api.py _uploaded builds SimpleUploadedFile(file["name"], ...): Django refuses a
    name it cannot derive a base name from with SuspiciousFileOperation, which the API answers
    as 500 INTERNAL_ERROR instead of a 400 on the file's name."""
    settings.PRIVATE_MEDIA_ROOT = str(tmp_path / "private")
    dispute = a_case()
    body = {"submittedBy": "BUYER", "file": {"name": name, "contentBase64": base64.b64encode(PNG).decode()}}
    response = post(writer, f"/disputes/{dispute.public_id}/evidence", body)
    assert response.status_code == 400, response.content
    assert not DisputeEvidence.objects.exists()


# --- Who reads a case -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_without_the_dispute_permission_do_not_read_the_case_on_the_order_page(settings, tmp_path):
    """The evidence file view lets staff in only with disputes.view_dispute (views._may_read_case),
    but the order page and its live fragment (marketplace.order_views._order_for: any is_staff
    user) show the same case's evidence texts, links, file names and the parties' thread to every
    staff account, e.g. one made for reconciliation or the sandbox with no dispute permission."""
    settings.PRIVATE_MEDIA_ROOT = str(tmp_path / "private")
    dispute = a_case()
    order = dispute.order
    buyer = order.buyer
    evidence = dispute_evidence_add(
        dispute=dispute,
        party="BUYER",
        actor=OrderActor.for_user(buyer),
        text="my bank statement, account 1234",
        file=SimpleUploadedFile("statement.png", PNG),
    )
    dispute_message_post(dispute=dispute, party="BUYER", actor=OrderActor.for_user(buyer), body="private words")
    staff = UserFactory(is_staff=True)  # staff, but no disputes permission at all
    assert not staff.has_perm("disputes.view_dispute")
    client = logged_in(staff)

    file_url = f"/disputes/{dispute.public_id}/evidence/{evidence.public_id}/file/"
    assert client.get(file_url).status_code == 404  # the file: refused

    for url in (f"/orders/{order.public_id}/", f"/orders/{order.public_id}/live/"):
        html = client.get(url).content.decode()
        assert "private words" not in html and "account 1234" not in html, url  # the same case: shown


# --- Staff who are a party to the case ----------------------------------------------------------------


@pytest.mark.django_db
def test_a_support_agent_who_is_the_buyer_cannot_take_or_decide_their_own_case():
    """disputes.services checks only actor.is_support (is_staff): an agent who bought the order
    (or sold it) assigns their own dispute from the backoffice, reads the internal notes about
    it, and may then resolve it in their own favour (dispute_resolve has the same check)."""

    agent = UserFactory(is_staff=True, email="agent-buyer@offerhub.test")
    agent.groups.add(Group.objects.get(name=SUPPORT_AGENT))
    dispute = a_case(buyer=agent)
    client = logged_in(agent)

    client.post(reverse("admin:disputes_dispute_assign", args=[dispute.pk]))

    assert Dispute.objects.get(pk=dispute.pk).status == Dispute.Status.OPEN  # not taken by a party to it
    assert client.get(reverse("admin:disputes_dispute_change", args=[dispute.pk])).status_code in (302, 404)
    with pytest.raises(ServiceError) as refused:
        dispute_assign(dispute=dispute, agent=agent.email, actor=OrderActor.for_user(agent))
    assert refused.value.code == "FORBIDDEN"
    with pytest.raises(ServiceError):
        dispute_message_post(
            dispute=dispute, party="SUPPORT", actor=OrderActor.for_user(agent), body="note", internal=True
        )


# --- A dispute opened while a milestone's payout is still on its way ----------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_dispute_opened_while_a_milestone_release_is_pending_can_still_be_resolved(
    chain, funded_user, trustless_work, writer, support, settings
):
    """The buyer approves the draft; the chain is slow (the release call answers 503 for a while)
    and the buyer opens a dispute meanwhile. Frozen then, the milestone being paid would be
    disputed too and what is left could never be resolved: the dispute waits (409
    ESCROW_NOT_READY, nothing changed) until the payout settles, then opens and is resolved."""

    settings.OFFERHUB_SYNC_WAIT_SECONDS = 0.3
    buyer, seller = funded_user("100.00"), funded_user("0")
    milestones = [
        {"ref": "draft", "description": "Draft", "amount": "10.00"},
        {"ref": "final", "description": "Final", "amount": "20.00"},
    ]
    order = in_progress(writer, buyer, seller, milestones=milestones)
    path = f"/orders/{order['id']}"
    assert post(writer, f"{path}/milestones/draft/complete").status_code == 201
    fault("release-milestone-funds", 503, remaining=1000)  # the provider is down for a while
    assert post(writer, f"{path}/milestones/draft/release").status_code == 202
    body = {"openedBy": "BUYER", "reason": "QUALITY_ISSUE"}
    early = post(writer, f"{path}/resolution/dispute", body)
    assert early.status_code == 409 and early.json()["error"]["code"] == "ESCROW_NOT_READY", early.content
    assert Order.objects.get().status == Order.Status.IN_PROGRESS and not Dispute.objects.exists()
    SandboxFault.objects.all().delete()  # the provider is back
    escrow = Escrow.objects.get()
    for _ in range(3):
        escrow_drive(escrow_pk=escrow.pk)
    opened = post(writer, f"{path}/resolution/dispute", body)
    assert opened.status_code == 201, opened.content
    dispute_id = opened.json()["data"]["id"]
    assert post(support, f"/disputes/{dispute_id}/assign", {"assignedTo": "ana"}).status_code == 200

    resolved = post(support, f"/disputes/{dispute_id}/resolve", {"decision": "FULL_REFUND"})

    assert resolved.status_code == 200, resolved.content
    assert Order.objects.get().status == Order.Status.CLOSED
    percent = Escrow.objects.get().platform_fee_percent
    assert user_accounts(seller)[0].balance == escrow_fees(amount=10 * USD, platform_fee_percent=percent).net
    assert user_accounts(buyer)[0].balance == 70 * USD + escrow_fees(amount=20 * USD, platform_fee_percent=percent).net
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(), buyer, seller)


# --- The inspection window across a withdrawn dispute -------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_withdrawing_a_dispute_does_not_auto_release_at_once_when_the_window_ran_out_during_it(
    chain, funded_user, trustless_work, writer, settings
):
    """The buyer disputes one hour after delivery; the case stays open longer than the inspection
    window; the buyer withdraws ("the order goes on as before"). orders_release_inspected looks
    only at delivered_at, so the next sweep releases the payment at once: the buyer's remaining
    inspection time was used up while the order was frozen, and nothing on the withdraw form
    says so."""

    buyer, seller = funded_user("100.00"), funded_user("0")
    opened = disputed(writer, buyer, seller)
    window = timedelta(hours=settings.OFFERHUB_INSPECTION_WINDOW_HOURS)
    # Delivered, disputed an hour later; the case then stayed open past the window.
    Order.objects.update(delivered_at=timezone.now() - window - timedelta(hours=1))
    Dispute.objects.update(created_at=timezone.now() - window)
    dispute_withdraw(dispute=_case(opened), party=Party.BUYER, actor=OrderActor.for_user(buyer))
    assert Order.objects.get().status == Order.Status.IN_PROGRESS

    assert orders_release_inspected() == 0
    assert Order.objects.get().status == Order.Status.IN_PROGRESS
