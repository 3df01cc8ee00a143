"""The backoffice's case page: support reads the whole case (order, milestones, escrow on chain,
both sides' evidence, the thread) and acts on it only through the dispute services: reply,
internal note, assign, reassign, resolve (with a preview net of fees, per milestone for a
multi-release escrow), each audited with the staff user as actor. Real sandbox flows."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from disputes.models import Dispute, DisputeMessage, Party
from disputes.services import RESOLUTION_STEPS, dispute_evidence_add, dispute_message_post
from escrow.models import Escrow, EscrowStep
from escrow.selectors import contract_forget
from marketplace.models import Order
from marketplace.orders import OrderActor
from offerhub.models import AuditLog
from payments.ledger import user_accounts
from tests.backoffice.test_dispute_queue import QUEUE, notes, queue_ids, resolve_url
from tests.escrow.test_lifecycle import USD, ledger_equals_chain
from tests.escrow.test_step_runner import fault
from tests.factories import UserFactory
from tests.marketplace.test_dispute_case_api import disputed, net, under_review

pytestmark = pytest.mark.django_db(transaction=True)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"
TWO_MILESTONES = [
    {"ref": "draft", "description": "Draft", "amount": "10.00"},
    {"ref": "final", "description": "Final", "amount": "20.00"},
]


def page_url(dispute: Dispute) -> str:
    return reverse("admin:disputes_dispute_change", args=[dispute.pk])


def action_url(dispute: Dispute, name: str) -> str:
    return reverse(f"admin:disputes_dispute_{name}", args=[dispute.pk])


def dollars(stroops: int) -> str:
    return f"${stroops // 100_000 // 100}.{stroops // 100_000 % 100:02d}"


def the_case(dispute_data: dict) -> Dispute:
    return Dispute.objects.select_related("order__buyer", "order__seller").get(public_id=dispute_data["id"])


def with_a_file_each_and_a_thread(dispute: Dispute, buyer, seller, agent_user) -> None:
    """The buyer sends a screenshot, the seller a PDF invoice and a link; the seller answers in
    the thread, support writes an internal note."""
    as_buyer, as_seller = OrderActor.for_user(buyer), OrderActor.for_user(seller)
    screenshot = SimpleUploadedFile("blurry.png", PNG, content_type="image/png")
    dispute_evidence_add(dispute=dispute, party=Party.BUYER, actor=as_buyer, text="See the edges", file=screenshot)
    invoice = SimpleUploadedFile("invoice.pdf", PDF, content_type="application/pdf")
    dispute_evidence_add(dispute=dispute, party=Party.SELLER, actor=as_seller, file=invoice)
    dispute_evidence_add(dispute=dispute, party=Party.SELLER, actor=as_seller, link="https://example.test/brief")
    dispute_message_post(dispute=dispute, party=Party.SELLER, actor=as_seller, body="The brief asked for this style.")
    dispute_message_post(
        dispute=dispute,
        party=Party.SUPPORT,
        actor=OrderActor.for_user(agent_user),
        body="Seller seems right so far.",
        internal=True,
    )


def test_the_case_page_shows_the_order_escrow_evidence_and_thread(
    chain, funded_user, trustless_work, writer, agent, django_assert_max_num_queries
):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = the_case(disputed(writer, buyer, seller, milestones=TWO_MILESTONES))
    with_a_file_each_and_a_thread(dispute, buyer, seller, agent.user)
    escrow = Escrow.objects.get()

    # One query per kind of record (14), plus content types when their cache is cold: never one per row.
    with django_assert_max_num_queries(16):
        response = agent.get(page_url(dispute))
    assert response.status_code == 200
    page = response.content.decode()

    order = dispute.order
    assert reverse("admin:marketplace_order_change", args=[order.pk]) in page and order.public_id in page
    assert order.title in page and "$30.00" in page and "DISPUTED" in page
    assert buyer.email in page and seller.email in page
    assert "Draft" in page and "$10.00" in page and "Final" in page and "$20.00" in page
    assert "300000000" not in page and "stroops" not in page
    # The escrow: ours, and the chain's state and balance, with the viewer's link.
    assert f"{escrow.status} (" in page
    assert "In dispute, balance $30.00" in page
    assert reverse("escrow-detail", args=[escrow.contract_id]) in page
    # Evidence: the opening statement as text, the image previewed, the PDF and link as links.
    assert "the logo is blurry" in page and '["the logo is blurry"]' not in page
    buyer_file, seller_file, _link = dispute.evidence_items.order_by("pk")
    image_url = reverse("dispute-evidence-file", args=[dispute.public_id, buyer_file.public_id])
    assert f'<img class="offerhub-evidence-image" src="{image_url}"' in page and "See the edges" in page
    pdf_url = reverse("dispute-evidence-file", args=[dispute.public_id, seller_file.public_id])
    assert f'<a href="{pdf_url}">invoice.pdf</a> (PDF' in page
    assert 'href="https://example.test/brief"' in page
    assert agent.get(image_url)["Content-Type"] == "image/png"  # the preview loads for staff
    # The thread, the internal note visibly marked.
    reply, note = dispute.messages.order_by("pk")
    assert "The brief asked for this style." in page and "Seller seems right so far." in page
    assert f'<li id="{note.public_id}" class="offerhub-message offerhub-from-support offerhub-internal">' in page
    assert f'<li id="{reply.public_id}" class="offerhub-message offerhub-from-seller">' in page
    assert page.count('offerhub-badge-internal">internal note') == 1
    # What support can do with an OPEN case, each a CSRF-protected POST.
    assert f'action="{action_url(dispute, "assign")}"' in page and 'value="Assign to me"' in page
    assert f'action="{action_url(dispute, "reply")}"' in page and 'name="internal"' in page
    assert "csrfmiddlewaretoken" in page
    assert action_url(dispute, "reassign") not in page and resolve_url(dispute) not in page


def test_the_case_page_says_so_when_the_chain_cannot_be_read(chain, funded_user, trustless_work, writer, agent):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = the_case(disputed(writer, buyer, seller))
    contract_forget(Escrow.objects.get().contract_id)
    fault("get-escrow-by-contract-ids", 503)

    response = agent.get(page_url(dispute))
    assert response.status_code == 200
    page = response.content.decode()
    assert "could not read the chain now" in page
    assert "DISPUTED" in page and "$30.00" in page  # the rest of the case is there


def test_a_reply_is_posted_as_support_audited_and_mailed_and_a_note_is_not_mailed(
    chain, funded_user, trustless_work, writer, support, agent, mailoutbox
):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = the_case(under_review(writer, support, buyer, seller))
    mailoutbox.clear()

    response = agent.post(action_url(dispute, "reply"), {"body": "Please both send the brief."})
    assert response.status_code == 302 and response.url == page_url(dispute)
    assert notes(response)[-1] == "Reply sent to both parties."
    message = DisputeMessage.objects.get()
    assert (message.party, message.author, message.internal) == (Party.SUPPORT, agent.user, False)
    audit = AuditLog.objects.get(action="dispute.message_posted")
    assert (audit.actor_type, audit.actor_id) == ("SUPPORT", agent.user.public_id)
    assert sorted(to for mail in mailoutbox for to in mail.to) == sorted([buyer.email, seller.email])
    assert "Please both send the brief." in mailoutbox[0].body

    mailoutbox.clear()
    noted = agent.post(action_url(dispute, "reply"), {"body": "Buyer is a repeat complainer.", "internal": "on"})
    assert notes(noted)[-1] == "Internal note added (not sent to the parties)."
    note = DisputeMessage.objects.get(internal=True)
    assert (note.party, note.author, note.body) == (Party.SUPPORT, agent.user, "Buyer is a repeat complainer.")
    audit = AuditLog.objects.get(action="dispute.note_added")
    assert (audit.actor_type, audit.actor_id) == ("SUPPORT", agent.user.public_id)
    assert mailoutbox == []

    empty = agent.post(action_url(dispute, "reply"), {"body": "   "})
    assert notes(empty)[-1].startswith("Nothing posted:")
    assert DisputeMessage.objects.count() == 2
    assert agent.get(action_url(dispute, "reply")).status_code == 405  # a POST only


def test_assign_to_me_then_reassign_to_another_agent(chain, funded_user, trustless_work, writer, agent):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = the_case(disputed(writer, buyer, seller))
    # A colleague who handles disputes through a group, and staff who does not.
    colleague = UserFactory(is_staff=True, email="bea@offerhub.test")
    team = Group.objects.create(name="Dispute handlers")
    team.permissions.set(Permission.objects.filter(codename__in=("view_dispute", "change_dispute")))
    colleague.groups.add(team)
    onlooker = UserFactory(is_staff=True, email="onlooker@offerhub.test")
    onlooker.user_permissions.set(Permission.objects.filter(codename="view_dispute"))

    assigned = agent.post(action_url(dispute, "assign"))
    assert assigned.status_code == 302
    assert notes(assigned)[-1] == f"{dispute.public_id} is assigned to you and under review."
    dispute = Dispute.objects.get(pk=dispute.pk)
    assert (dispute.status, dispute.assigned_to) == (Dispute.Status.UNDER_REVIEW, "agent@offerhub.test")
    audit = AuditLog.objects.get(action="dispute.under_review")
    assert (audit.actor_type, audit.actor_id) == ("SUPPORT", agent.user.public_id)

    page = agent.get(page_url(dispute)).content.decode()
    assert f'action="{action_url(dispute, "reassign")}"' in page and resolve_url(dispute) in page
    form = agent.get(page_url(dispute)).context["reassign_form"]
    assert list(form.fields["agent"].queryset) == [colleague]  # not the assignee, not staff without the permission

    refused = agent.post(action_url(dispute, "reassign"), {"agent": onlooker.pk})
    assert notes(refused)[-1] == "Not reassigned: choose a support agent from the list."
    assert Dispute.objects.get(pk=dispute.pk).assigned_to == "agent@offerhub.test"

    moved = agent.post(action_url(dispute, "reassign"), {"agent": colleague.pk})
    assert notes(moved)[-1] == f"{dispute.public_id} is now assigned to bea@offerhub.test."
    dispute = Dispute.objects.get(pk=dispute.pk)
    assert (dispute.status, dispute.assigned_to) == (Dispute.Status.UNDER_REVIEW, "bea@offerhub.test")
    audit = AuditLog.objects.get(action="dispute.reassigned")
    assert (audit.actor_type, audit.actor_id) == ("SUPPORT", agent.user.public_id)
    assert audit.payload_after["status"] == Dispute.Status.UNDER_REVIEW

    again = agent.post(action_url(dispute, "assign"))
    assert notes(again)[-1].startswith("Not assigned: the dispute is UNDER_REVIEW")


def test_staff_without_the_dispute_permissions_get_403_and_members_the_login(
    chain, funded_user, trustless_work, writer, client
):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = the_case(disputed(writer, buyer, seller))

    client.force_login(UserFactory(is_staff=True))
    assert client.get(page_url(dispute)).status_code == 403
    assert client.get(QUEUE).status_code == 403
    for name in ("assign", "reply"):
        assert client.post(action_url(dispute, name), {"body": "hello"}).status_code == 403, name
    assert client.post(action_url(dispute, "reassign"), {"agent": 1}).status_code == 403

    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_dispute"))
    client.force_login(viewer)
    page = client.get(page_url(dispute))
    assert page.status_code == 200 and "Assign to me" not in page.content.decode()  # reads, cannot act
    assert client.post(action_url(dispute, "assign")).status_code == 403

    client.force_login(buyer)
    response = client.post(action_url(dispute, "reply"), {"body": "hello"})
    assert response.status_code == 302 and response.url.startswith(reverse("admin:login"))
    assert Dispute.objects.get(pk=dispute.pk).status == Dispute.Status.OPEN
    assert not DisputeMessage.objects.exists()


def test_the_queue_flags_overdue_cases_and_filters_them(agent, django_assert_max_num_queries):
    buyer, seller = UserFactory(), UserFactory()
    now = timezone.now()

    def case(title: str, **fields) -> Dispute:
        order = Order.objects.create(buyer=buyer, seller=seller, amount=10 * USD, title=title)
        return Dispute.objects.create(order=order, opened_by="BUYER", reason="OTHER", **fields)

    late = case("Late", respond_by=now - timedelta(hours=1))
    answered = case("Answered", respond_by=now - timedelta(hours=1), responded_at=now - timedelta(hours=2))
    due = case("Due", respond_by=now + timedelta(hours=30))
    settled = case("Settled", respond_by=now - timedelta(hours=1))
    Dispute.objects.filter(pk=settled.pk).update(status=Dispute.Status.RESOLVED)
    for n in range(15):
        case(f"Late {n}", respond_by=now - timedelta(hours=2))

    with django_assert_max_num_queries(8):
        page = agent.get(QUEUE).content.decode()
    headers = ["order", "amount", "parties", "reason", "age", "deadline", "assignee", "status"]
    positions = [page.index(f">{header.capitalize()}</a>") for header in headers]
    assert positions == sorted(positions)  # the columns in this order
    rows = {dispute_id: row for dispute_id, row in _rows(page)}
    assert 'offerhub-badge-overdue">overdue</span>' in rows[late.public_id]
    assert "answered" in rows[answered.public_id] and "overdue" not in rows[answered.public_id]
    assert "due in 1" in rows[due.public_id] and "overdue" not in rows[due.public_id]
    assert "overdue" not in rows[settled.public_id]
    assert "$10.00" in rows[late.public_id]

    overdue = queue_ids(agent, overdue="yes")
    assert late.public_id in overdue and len(set(overdue)) == 16
    assert not {answered.public_id, due.public_id, settled.public_id} & set(overdue)


def _rows(page: str):
    import re

    for row in re.findall(r"<tr>(.*?)</tr>", page, re.S):
        found = re.search(r"\b(dsp_[A-Za-z0-9]+)", row)
        if found:
            yield found.group(1), row


def split_form(**fields) -> dict:
    return {"decision": "SPLIT", "note": "Half the logo was delivered", "confirm": "on", **fields}


def test_the_resolve_preview_shows_each_side_net_of_fees_and_applies_nothing(
    chain, funded_user, trustless_work, writer, support, agent
):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = the_case(under_review(writer, support, buyer, seller))

    form = agent.get(resolve_url(dispute)).content.decode()
    assert 'data-tw-bps="30"' in form and 'data-platform-percent="5.00"' in form
    assert f'data-held="{30 * USD}"' in form and "js/admin-dispute-resolve.js" in form

    preview = agent.post(
        resolve_url(dispute), {"decision": "SPLIT", "release_amount": "18.00", "refund_amount": "12.00", "preview": "1"}
    )
    assert preview.status_code == 200
    page = preview.content.decode()
    assert f'offerhub-net-seller">{dollars(net(18 * USD))}<' in page  # $17.04: 0.3 % and 5 % off
    assert f'offerhub-net-buyer">{dollars(net(12 * USD))}<' in page
    assert dollars(net(18 * USD)) == "$17.04"
    assert Dispute.objects.get(pk=dispute.pk).status == Dispute.Status.UNDER_REVIEW
    assert not EscrowStep.objects.filter(action__in=RESOLUTION_STEPS).exists()
    assert not AuditLog.objects.filter(action="dispute.resolved").exists()

    refund_all = agent.post(resolve_url(dispute), {"decision": "FULL_REFUND", "preview": "1"}).content.decode()
    assert f'offerhub-net-buyer">{dollars(net(30 * USD))}<' in refund_all
    assert 'offerhub-net-seller">$0.00<' in refund_all

    wrong = agent.post(
        resolve_url(dispute), {"decision": "SPLIT", "release_amount": "20.00", "refund_amount": "5.00", "preview": "1"}
    )
    assert wrong.context["form"].errors == {"release_amount": ["the two amounts must add up to $30.00"]}
    assert wrong.context["preview"] is None


def test_a_per_milestone_split_pays_each_milestone_as_given_on_chain(
    chain, funded_user, trustless_work, writer, support, agent
):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = the_case(under_review(writer, support, buyer, seller, milestones=TWO_MILESTONES))
    draft, final = Escrow.objects.get().milestones.order_by("index")
    shares = {f"milestone_{draft.index}": "4.00", f"milestone_{final.index}": "15.00"}

    form = agent.get(resolve_url(dispute)).content.decode()
    assert 'name="milestone_0"' in form and 'name="milestone_1"' in form
    assert f'data-milestone-amount="{20 * USD}"' in form

    preview = agent.post(resolve_url(dispute), {"decision": "SPLIT", "preview": "1", **shares}).content.decode()
    assert f'offerhub-net-seller">{dollars(net(4 * USD) + net(15 * USD))}<' in preview
    assert f'offerhub-net-buyer">{dollars(net(6 * USD) + net(5 * USD))}<' in preview

    missing = agent.post(resolve_url(dispute), split_form(milestone_0="4.00"))
    assert missing.context["form"].errors == {
        "milestone_1": ["say what of this milestone goes to the seller (0 for nothing)"]
    }
    too_much = agent.post(resolve_url(dispute), split_form(milestone_0="11.00", milestone_1="1.00"))
    assert too_much.context["form"].errors == {"milestone_0": ["this milestone holds $10.00: at most that"]}
    assert not EscrowStep.objects.filter(action__in=RESOLUTION_STEPS).exists()

    response = agent.post(resolve_url(dispute), split_form(**shares))
    assert response.status_code == 302, response.content.decode()
    assert notes(response)[-1] == "Resolved: the payout is confirmed on chain and the order closed."
    resolved = Dispute.objects.get(pk=dispute.pk)
    assert (resolved.release_amount, resolved.refund_amount) == (19 * USD, 11 * USD)  # totals from the milestones
    steps = EscrowStep.objects.filter(action=EscrowStep.Action.RESOLVE_MILESTONE).order_by("milestone_index")
    paid = [sorted(int(amount) for _, amount in step.params["distributions"]) for step in steps]
    assert paid == [[4 * USD, 6 * USD], [5 * USD, 15 * USD]]
    assert user_accounts(seller)[0].balance == net(4 * USD) + net(15 * USD)
    assert user_accounts(buyer)[0].balance == 70 * USD + net(6 * USD) + net(5 * USD)
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(), buyer, seller)
    audit = AuditLog.objects.get(action="dispute.resolved")
    assert (audit.actor_type, audit.actor_id) == ("SUPPORT", agent.user.public_id)

    page = agent.get(page_url(dispute)).content.decode()
    assert "Split" in page and "$19.00" in page and "$11.00" in page and "Half the logo was delivered" in page
    assert "Resolved, balance $0.00" in page  # the chain, read again after the payout
    assert resolve_url(dispute) not in page and action_url(dispute, "reassign") not in page


def test_evidence_and_messages_have_read_only_admin_pages(chain, funded_user, trustless_work, writer, agent):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = the_case(disputed(writer, buyer, seller))
    with_a_file_each_and_a_thread(dispute, buyer, seller, agent.user)
    agent.user.user_permissions.add(
        *Permission.objects.filter(codename__in=("view_disputeevidence", "view_disputemessage"))
    )

    evidence = agent.get(reverse("admin:disputes_disputeevidence_changelist")).content.decode()
    image = dispute.evidence_items.get(kind="FILE", file_name="blurry.png")
    assert reverse("dispute-evidence-file", args=[dispute.public_id, image.public_id]) in evidence
    assert "invoice.pdf" in evidence and "https://example.test/brief" in evidence
    detail = agent.get(reverse("admin:disputes_disputeevidence_change", args=[image.pk]))
    assert detail.status_code == 200 and "<img" in detail.content.decode()

    thread = agent.get(reverse("admin:disputes_disputemessage_changelist")).content.decode()
    assert "staff only (internal note)" in thread and "The brief asked for this style." in thread
