"""The backoffice's dispute queue and its actions: support assigns and resolves a dispute from
the Django admin, through the dispute services, paid on chain by the sandbox the live server serves."""

import re

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from disputes.models import Dispute
from escrow.models import Escrow, EscrowStep
from marketplace.models import Order
from offerhub.models import AuditLog
from payments.ledger import user_accounts
from tests.escrow.test_lifecycle import USD, ledger_equals_chain
from tests.factories import UserFactory
from tests.marketplace.test_dispute_case_api import RESOLUTION_STEPS, disputed, net, under_review

pytestmark = pytest.mark.django_db(transaction=True)
QUEUE = reverse("admin:disputes_dispute_changelist")


def resolve_url(dispute: Dispute) -> str:
    return reverse("admin:disputes_dispute_resolve", args=[dispute.pk])


def queue_ids(client, **params) -> list[str]:
    page = client.get(QUEUE, params)
    assert page.status_code == 200
    return re.findall(r"\b(dsp_[A-Za-z0-9]+)", page.content.decode())


def notes(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_the_queue_lists_a_dispute_with_its_columns_and_filters(chain, funded_user, trustless_work, writer, agent):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = Dispute.objects.select_related("order").get(public_id=disputed(writer, buyer, seller)["id"])

    page = agent.get(QUEUE).content.decode()
    case_url = reverse("admin:disputes_dispute_change", args=[dispute.pk])
    assert f'href="{case_url}" title="Open the case {dispute.public_id}">{dispute.order.title}</a>' in page
    order_url = reverse("admin:marketplace_order_change", args=[dispute.order_id])
    assert f'href="{order_url}" title="{dispute.order.public_id}">{dispute.order.public_id}</a>' in page
    assert "30.00" in page and "300000000" not in page  # dollars, never stroops
    assert buyer.email in page and seller.email in page
    assert "quality issue" in page and "OPEN" in page

    assert dispute.public_id in queue_ids(agent, status__exact="OPEN")
    assert dispute.public_id not in queue_ids(agent, status__exact="RESOLVED")
    assert dispute.public_id in queue_ids(agent, assignee="none")
    assert dispute.public_id not in queue_ids(agent, assignee="me")
    assert dispute.public_id in queue_ids(agent, reason__exact="QUALITY_ISSUE")
    assert dispute.public_id not in queue_ids(agent, reason__exact="NOT_DELIVERED")
    for term in (dispute.public_id, dispute.order.public_id, buyer.email, seller.email):
        assert dispute.public_id in queue_ids(agent, q=term), term
    assert dispute.public_id not in queue_ids(agent, q="nobody@example.test")


def test_the_queue_is_oldest_first_in_a_bounded_number_of_queries(agent, django_assert_max_num_queries):
    buyer, seller = UserFactory(), UserFactory()
    created = []
    for n in range(20):
        order = Order.objects.create(buyer=buyer, seller=seller, amount=(n + 1) * USD, title=f"Order {n}")
        created.append(Dispute.objects.create(order=order, opened_by="BUYER", reason="OTHER").public_id)

    with django_assert_max_num_queries(8):  # session, user, permissions, counts, one page of rows: not one per row
        ids = queue_ids(agent)
    assert list(dict.fromkeys(ids)) == created


def test_assign_to_me_takes_open_disputes_and_skips_the_others(chain, funded_user, trustless_work, writer, agent):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = Dispute.objects.get(public_id=disputed(writer, buyer, seller)["id"])
    action = {"action": "assign_to_me", "_selected_action": [dispute.pk]}

    response = agent.post(QUEUE, action)
    assert response.status_code == 302
    assert notes(response) == ["Assigned 1 dispute(s) to you."]
    assigned = Dispute.objects.get(pk=dispute.pk)
    assert (assigned.status, assigned.assigned_to) == (Dispute.Status.UNDER_REVIEW, "agent@offerhub.test")
    audit = AuditLog.objects.get(action="dispute.under_review")
    assert (audit.actor_type, audit.actor_id) == ("SUPPORT", agent.user.public_id)
    assert dispute.public_id in queue_ids(agent, assignee="me")

    again = agent.post(QUEUE, action)
    assert notes(again) == [f"Skipped, only an OPEN dispute can be assigned: {dispute.public_id} (UNDER_REVIEW)"]
    assert AuditLog.objects.filter(action="dispute.under_review").count() == 1


def split_form(release: str, refund: str) -> dict:
    return {
        "decision": "SPLIT",
        "release_amount": release,
        "refund_amount": refund,
        "note": "Half the logo was delivered",
        "confirm": "on",
    }


def test_the_resolve_view_resolves_a_split_paid_on_chain(chain, funded_user, trustless_work, writer, support, agent):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = Dispute.objects.get(public_id=under_review(writer, support, buyer, seller)["id"])
    change_page = agent.get(reverse("admin:disputes_dispute_change", args=[dispute.pk])).content.decode()
    assert resolve_url(dispute) in change_page

    form = agent.get(resolve_url(dispute)).content.decode()
    assert "csrfmiddlewaretoken" in form and "$30.00" in form
    assert "FULL_RELEASE pays the seller $30.00 and the buyer $0.00" in form

    response = agent.post(resolve_url(dispute), split_form("18.00", "12.00"))
    assert response.status_code == 302, response.content.decode()
    assert response.url == reverse("admin:disputes_dispute_change", args=[dispute.pk])
    assert notes(response) == ["Resolved: the payout is confirmed on chain and the order closed."]
    resolved = Dispute.objects.get(pk=dispute.pk)
    assert (resolved.status, resolved.resolution_decision) == (Dispute.Status.RESOLVED, "SPLIT")
    assert (resolved.release_amount, resolved.refund_amount) == (18 * USD, 12 * USD)
    assert resolved.decision_note == "Half the logo was delivered"
    assert Order.objects.get().status == Order.Status.CLOSED
    assert user_accounts(seller)[0].balance == net(18 * USD)
    assert user_accounts(buyer)[0].balance == 70 * USD + net(12 * USD)
    assert user_accounts(buyer)[1].balance == 0
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(), buyer, seller)
    audit = AuditLog.objects.get(action="dispute.resolved")
    assert (audit.actor_type, audit.actor_id) == ("SUPPORT", agent.user.public_id)


def test_a_split_that_does_not_add_up_is_shown_by_its_field_and_nothing_applied(
    chain, funded_user, trustless_work, writer, support, agent
):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = Dispute.objects.get(public_id=under_review(writer, support, buyer, seller)["id"])

    response = agent.post(resolve_url(dispute), split_form("20.00", "5.00"))
    assert response.status_code == 200
    form = response.context["form"]
    assert form.errors == {
        "release_amount": ["releaseAmount and refundAmount must add up to 30.00, what the escrow holds"]
    }
    assert "must add up to 30.00" in response.content.decode()
    unchanged = Dispute.objects.get(pk=dispute.pk)
    assert (unchanged.status, unchanged.resolution_decision) == (Dispute.Status.UNDER_REVIEW, "")
    assert Order.objects.get().status == Order.Status.DISPUTED
    assert not EscrowStep.objects.filter(action__in=RESOLUTION_STEPS).exists()
    assert not AuditLog.objects.filter(action="dispute.resolved").exists()

    unconfirmed = agent.post(resolve_url(dispute), {**split_form("18.00", "12.00"), "confirm": ""})
    assert list(unconfirmed.context["form"].errors) == ["confirm"]
    assert Dispute.objects.get(pk=dispute.pk).status == Dispute.Status.UNDER_REVIEW


def test_the_resolve_view_is_refused_to_a_member_and_to_staff_without_the_permission(
    chain, funded_user, trustless_work, writer, support, client
):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = Dispute.objects.get(public_id=under_review(writer, support, buyer, seller)["id"])

    client.force_login(buyer)
    for response in (client.get(resolve_url(dispute)), client.post(resolve_url(dispute), split_form("18.00", "12.00"))):
        assert response.status_code == 302 and response.url.startswith(reverse("admin:login"))

    client.force_login(UserFactory(is_staff=True))
    assert client.post(resolve_url(dispute), split_form("18.00", "12.00")).status_code == 403
    assert Dispute.objects.get(pk=dispute.pk).status == Dispute.Status.UNDER_REVIEW
    assert not EscrowStep.objects.filter(action__in=RESOLUTION_STEPS).exists()
