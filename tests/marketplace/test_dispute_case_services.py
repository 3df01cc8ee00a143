"""The dispute case's services: withdrawal (and what the chain does after it), evidence, the
thread, the response deadline and per-milestone splits, against the sandbox over HTTP."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from disputes.models import Dispute, DisputeEvidence, Party
from disputes.services import (
    dispute_evidence_add,
    dispute_message_post,
    dispute_open,
    dispute_reassign,
    dispute_resolve,
    dispute_withdraw,
)
from escrow.models import Escrow, EscrowStep
from marketplace.models import Order
from marketplace.orders import OrderActor
from offerhub.errors import ServiceError
from offerhub.models import AuditLog, Event
from payments.ledger import user_accounts
from tests.escrow.test_lifecycle import USD, ledger_equals_chain
from tests.factories import UserFactory
from tests.marketplace.test_dispute_case_api import disputed, net, post, under_review

pytestmark = pytest.mark.django_db(transaction=True)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
STAFF = OrderActor("SUPPORT", "usr_staff", None, is_support=True)


def case(dispute: dict) -> Dispute:
    return Dispute.objects.select_related("order__buyer", "order__seller").get(public_id=dispute["id"])


def test_the_opener_withdraws_and_the_release_is_paid_by_the_dispute_resolver(
    chain, funded_user, trustless_work, writer
):
    buyer, seller = funded_user("100.00"), funded_user("0")
    opened = disputed(writer, buyer, seller)
    dispute = case(opened)
    assert Escrow.objects.get().status == Escrow.Status.DISPUTED  # frozen on chain

    with pytest.raises(ServiceError) as not_theirs:
        dispute_withdraw(dispute=dispute, party=Party.SELLER, actor=OrderActor.for_user(seller))
    assert not_theirs.value.code == "FORBIDDEN"

    dispute_withdraw(dispute=dispute, party=Party.BUYER, actor=OrderActor.for_user(buyer))

    assert case(opened).status == Dispute.Status.WITHDRAWN and case(opened).withdrawn_at
    assert Order.objects.get().status == Order.Status.IN_PROGRESS
    # Trustless Work v1 cannot clear the flag: the escrow stays DISPUTED, as on chain.
    assert Escrow.objects.get().status == Escrow.Status.DISPUTED
    assert {"dispute.withdrawn", "order.dispute_withdrawn"} <= set(Event.objects.values_list("type", flat=True))

    path = f"/orders/{opened['orderId']}"
    released = post(writer, f"{path}/resolution/release")
    assert released.status_code == 200, released.content
    assert released.json()["data"]["status"] == "CLOSED"
    (payout,) = EscrowStep.objects.filter(action=EscrowStep.Action.RESOLVE)
    assert payout.signer == Escrow.objects.get().roles["disputeResolver"]
    assert not EscrowStep.objects.filter(action=EscrowStep.Action.RELEASE).exists()
    assert user_accounts(seller)[0].balance == net(30 * USD)
    assert Escrow.objects.get().status == Escrow.Status.RELEASED
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(), buyer, seller)


def test_after_a_withdrawal_a_refund_and_a_milestone_release_also_pay_through_the_resolver(
    chain, funded_user, trustless_work, writer
):
    buyer, seller = funded_user("100.00"), funded_user("0")
    milestones = [
        {"ref": "draft", "description": "Draft", "amount": "10.00"},
        {"ref": "final", "description": "Final", "amount": "20.00"},
    ]
    opened = disputed(writer, buyer, seller, milestones=milestones)
    dispute_withdraw(dispute=case(opened), party=Party.BUYER, actor=OrderActor.for_user(buyer))
    path = f"/orders/{opened['orderId']}"

    assert post(writer, f"{path}/milestones/draft/complete").status_code == 201
    first = post(writer, f"{path}/milestones/draft/release")
    assert first.status_code == 200, first.content
    assert [m["status"] for m in first.json()["data"]["milestones"]] == ["RELEASED", "OPEN"]
    refunded = post(writer, f"{path}/resolution/refund", {"reason": "could not finish"})
    assert refunded.status_code == 200, refunded.content
    assert refunded.json()["data"]["status"] == "CLOSED"

    assert user_accounts(seller)[0].balance == net(10 * USD)
    assert user_accounts(buyer)[0].balance == 70 * USD + net(20 * USD)
    assert not EscrowStep.objects.filter(status=EscrowStep.Status.FAILED).exists()
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(), buyer, seller)


def test_a_withdrawn_case_opens_again_and_support_resolves_it(chain, funded_user, trustless_work, writer, support):
    buyer, seller = funded_user("100.00"), funded_user("0")
    opened = disputed(writer, buyer, seller)
    dispute_withdraw(dispute=case(opened), party=Party.BUYER, actor=OrderActor.for_user(buyer))
    order = Order.objects.get()

    again = dispute_open(order=order, actor=OrderActor.for_user(seller), opened_by="SELLER", reason="OTHER")

    assert again.public_id == opened["id"]  # one case per order: the same one, open again
    assert (again.status, again.opened_by, again.withdrawn_at) == (Dispute.Status.OPEN, "SELLER", None)
    assert Order.objects.get().status == Order.Status.DISPUTED
    assert EscrowStep.objects.filter(action=EscrowStep.Action.DISPUTE).count() == 1  # nothing new on chain
    assert post(support, f"/disputes/{opened['id']}/assign", {"assignedTo": "ana"}).status_code == 200
    resolved = post(support, f"/disputes/{opened['id']}/resolve", {"decision": "FULL_REFUND"})
    assert resolved.status_code == 200 and resolved.json()["data"]["order"]["status"] == "CLOSED"
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(), buyer, seller)


def test_only_an_open_case_is_withdrawn(chain, funded_user, trustless_work, writer, support):
    buyer, seller = funded_user("100.00"), funded_user("0")
    opened = under_review(writer, support, buyer, seller)
    with pytest.raises(ServiceError) as refused:
        dispute_withdraw(dispute=case(opened), party=Party.BUYER, actor=OrderActor.for_user(buyer))
    assert refused.value.code == "INVALID_STATE"
    assert Order.objects.get().status == Order.Status.DISPUTED


def test_evidence_from_both_sides_is_checked_and_stored_privately(chain, funded_user, trustless_work, writer):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = case(disputed(writer, buyer, seller))
    as_seller = OrderActor.for_user(seller)

    added = dispute_evidence_add(
        dispute=dispute,
        party=Party.SELLER,
        actor=as_seller,
        text="the delivered file",
        file=SimpleUploadedFile("proof.png", PNG, content_type="image/png"),
    )
    link = dispute_evidence_add(
        dispute=dispute, party=Party.BUYER, actor=OrderActor.for_user(buyer), link="https://example.com/brief"
    )

    assert (added.kind, added.file_name, added.file_size, added.is_image) == ("FILE", "proof.png", len(PNG), True)
    assert added.file.name.startswith(f"disputes/{dispute.public_id}/")
    assert link.kind == DisputeEvidence.Kind.LINK
    assert case({"id": dispute.public_id}).responded_at is not None  # the seller answered the buyer's case
    for bad, field in (
        ({"file": SimpleUploadedFile("fake.png", b"<script>", content_type="image/png")}, "file"),
        ({"file": SimpleUploadedFile("notes.zip", b"PK\x03\x04", content_type="application/zip")}, "file"),
        ({"link": "javascript:alert(1)"}, "link"),
        ({"text": "x" * 2001}, "text"),
        ({}, "text"),
    ):
        with pytest.raises(ServiceError) as refused:
            dispute_evidence_add(dispute=dispute, party=Party.SELLER, actor=as_seller, **bad)
        assert (refused.value.code, refused.value.field) == ("VALIDATION_ERROR", field)
    with pytest.raises(ServiceError) as impostor:
        dispute_evidence_add(dispute=dispute, party=Party.BUYER, actor=as_seller, text="I am the buyer")
    assert impostor.value.code == "FORBIDDEN"
    assert DisputeEvidence.objects.count() == 2


def test_the_thread_notifies_the_others_and_internal_notes_stay_with_support(
    chain, funded_user, trustless_work, writer, mailoutbox, django_capture_on_commit_callbacks
):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = case(disputed(writer, buyer, seller))
    mailoutbox.clear()  # the opening's own notices

    with django_capture_on_commit_callbacks(execute=True):
        message = dispute_message_post(
            dispute=dispute, party=Party.SELLER, actor=OrderActor.for_user(seller), body="I delivered on time."
        )
    assert (message.party, message.author, message.internal) == ("SELLER", seller, False)
    (mail,) = mailoutbox
    assert mail.to == [buyer.email] and "I delivered on time." in mail.body

    with django_capture_on_commit_callbacks(execute=True):
        note = dispute_message_post(
            dispute=dispute, party=Party.SUPPORT, actor=STAFF, body="Seller has a history.", internal=True
        )
    assert note.internal and len(mailoutbox) == 1  # nobody hears of a note
    assert not Event.objects.filter(type="dispute.message_posted", payload__messageId=note.public_id).exists()
    assert AuditLog.objects.filter(action="dispute.note_added", resource_id=dispute.public_id).exists()

    with pytest.raises(ServiceError) as not_support:
        dispute_message_post(
            dispute=dispute, party=Party.BUYER, actor=OrderActor.for_user(buyer), body="psst", internal=True
        )
    assert not_support.value.code == "FORBIDDEN"


def test_a_case_without_an_answer_is_overdue_after_the_response_window(chain, funded_user, trustless_work, writer):
    buyer, seller = funded_user("100.00"), funded_user("0")
    with override_settings(OFFERHUB_DISPUTE_RESPONSE_HOURS=24):
        dispute = case(disputed(writer, buyer, seller))
    assert abs(dispute.respond_by - (dispute.created_at + timedelta(hours=24))) < timedelta(seconds=30)
    later = timezone.now() + timedelta(hours=25)
    assert dispute.responding_party == Party.SELLER
    assert not dispute.is_overdue() and dispute.is_overdue(now=later)

    dispute_message_post(dispute=dispute, party=Party.BUYER, actor=OrderActor.for_user(buyer), body="still waiting")
    assert case({"id": dispute.public_id}).is_overdue(now=later)  # the opener's words are no answer
    dispute_message_post(dispute=dispute, party=Party.SELLER, actor=OrderActor.for_user(seller), body="here")
    assert not case({"id": dispute.public_id}).is_overdue(now=later)


def test_support_reassigns_a_case_under_review(chain, funded_user, trustless_work, writer, support):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = case(under_review(writer, support, buyer, seller))
    dispute_reassign(dispute=dispute, agent="bob@support.test", actor=STAFF)
    assert case({"id": dispute.public_id}).assigned_to == "bob@support.test"
    assert AuditLog.objects.get(action="dispute.reassigned").payload_after["previouslyAssignedTo"] == "agent-ana"
    with pytest.raises(ServiceError) as member:
        dispute_reassign(dispute=dispute, agent="me", actor=OrderActor.for_user(buyer))
    assert member.value.code == "FORBIDDEN"


def test_a_per_milestone_split_pays_each_milestone_as_decided(chain, funded_user, trustless_work, writer, support):
    buyer, seller = funded_user("100.00"), funded_user("0")
    milestones = [
        {"ref": "draft", "description": "Draft", "amount": "10.00"},
        {"ref": "final", "description": "Final", "amount": "20.00"},
    ]
    dispute = case(under_review(writer, support, buyer, seller, milestones=milestones))

    for shares, field in (({"draft": 4 * USD}, "milestones"), ({"draft": 11 * USD, "final": 0}, "milestones")):
        with pytest.raises(ServiceError) as refused:
            dispute_resolve(
                dispute=dispute,
                decision="SPLIT",
                release_amount=None,
                refund_amount=None,
                note="",
                actor=STAFF,
                milestone_release_amounts=shares,
            )
        assert refused.value.field == field
    dispute_resolve(
        dispute=dispute,
        decision="SPLIT",
        release_amount=None,
        refund_amount=None,
        note="half of the draft, most of the final",
        actor=STAFF,
        milestone_release_amounts={"draft": 5 * USD, "final": 15 * USD},
    )

    decided = case({"id": dispute.public_id})
    assert (decided.release_amount, decided.refund_amount) == (20 * USD, 10 * USD)
    paid = {
        s.milestone_index: s.params["distributions"]
        for s in EscrowStep.objects.filter(action=EscrowStep.Action.RESOLVE_MILESTONE)
    }
    escrow = Escrow.objects.get()
    seller_address, buyer_address = escrow.roles["serviceProvider"], escrow.roles["approver"]
    assert paid == {
        0: [[seller_address, str(5 * USD)], [buyer_address, str(5 * USD)]],
        1: [[seller_address, str(15 * USD)], [buyer_address, str(5 * USD)]],
    }
    assert Order.objects.get().status == Order.Status.CLOSED
    assert user_accounts(seller)[0].balance == net(5 * USD) + net(15 * USD)
    assert user_accounts(buyer)[0].balance == 70 * USD + net(5 * USD) + net(5 * USD)
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)


def test_an_evidence_file_is_served_only_to_the_parties_and_dispute_staff(
    chain, funded_user, trustless_work, writer, client
):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = case(disputed(writer, buyer, seller))
    image = dispute_evidence_add(
        dispute=dispute,
        party=Party.BUYER,
        actor=OrderActor.for_user(buyer),
        file=SimpleUploadedFile("photo.png", PNG, content_type="image/png"),
    )
    pdf = dispute_evidence_add(
        dispute=dispute,
        party=Party.SELLER,
        actor=OrderActor.for_user(seller),
        file=SimpleUploadedFile("invoice.pdf", b"%PDF-1.4 test", content_type="application/pdf"),
    )
    agent = UserFactory(is_staff=True)
    agent.user_permissions.add(Permission.objects.get(codename="view_dispute"))
    staff_without = UserFactory(is_staff=True)

    def url(evidence):
        return reverse("dispute-evidence-file", args=[dispute.public_id, evidence.public_id])

    for user, expected in ((buyer, 200), (seller, 200), (agent, 200), (staff_without, 404), (UserFactory(), 404)):
        client.force_login(user)
        assert client.get(url(image)).status_code == expected, user
    client.force_login(buyer)
    shown = client.get(url(image))
    assert shown["Content-Disposition"].startswith("inline") and shown["Content-Type"] == "image/png"
    assert b"".join(shown.streaming_content) == PNG
    assert "sandbox" in shown["Content-Security-Policy"]
    downloaded = client.get(url(pdf))
    assert downloaded["Content-Disposition"].startswith("attachment")
    client.logout()
    assert client.get(url(pdf)).status_code == 302  # to the sign-in page
