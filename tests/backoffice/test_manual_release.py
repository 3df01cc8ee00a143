"""Manual settlement from the backoffice: support releases an order's escrow (whole or per
milestone) or refunds it outside a dispute, with a reason and a confirmation, paid on chain by
the sandbox the live server serves; the ledger equals the chain after."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from backoffice.roles import SUPPORT_AGENT
from escrow.models import Escrow, EscrowStep
from marketplace.manual import order_settle_manually
from marketplace.models import Order, OrderMilestone
from marketplace.orders import (
    SYSTEM,
    OrderActor,
    order_milestone_complete,
    order_milestone_release,
    order_release,
)
from offerhub.errors import ServiceError
from offerhub.models import AuditLog
from payments.ledger import user_accounts
from sandbox.models import SandboxEscrowCall
from tests.escrow.test_lifecycle import USD, ledger_equals_chain
from tests.escrow.test_step_runner import fault
from tests.factories import UserFactory
from tests.marketplace.test_dispute_case_api import disputed, net
from tests.marketplace.test_orders_api import in_progress

pytestmark = pytest.mark.django_db(transaction=True)
MILESTONES = [
    {"ref": "draft", "description": "Draft", "amount": "10.00"},
    {"ref": "final", "description": "Final", "amount": "20.00"},
]
PAYOUT_STEPS = ("approve-milestone", "release-funds", "release-milestone-funds", "resolve-dispute")
FORM = {"reason": "The seller delivered by e-mail; the buyer asked us to pay", "confirm": "on"}


@pytest.fixture
def settler(client):
    """A support agent (the group staff work in; not a superuser): settles orders by hand."""
    user = UserFactory(is_staff=True, email="agent@offerhub.test")
    user.groups.add(Group.objects.get(name=SUPPORT_AGENT))
    client.force_login(user)
    client.user = user
    return client


def order_url(order: Order) -> str:
    return reverse("admin:marketplace_order_change", args=[order.pk])


def release_url(order: Order) -> str:
    return reverse("admin:marketplace_order_release", args=[order.pk])


def refund_url(order: Order) -> str:
    return reverse("admin:marketplace_order_refund", args=[order.pk])


def milestone_url(order: Order, ref: str) -> str:
    return reverse("admin:marketplace_order_milestone_release", args=[order.pk, ref])


def note(response) -> str:
    """The message this response added (the session keeps the earlier ones until a page shows them)."""
    return [str(message) for message in get_messages(response.wsgi_request)][-1]


def placed(writer, buyer, seller, **extra) -> Order:
    return Order.objects.get(public_id=in_progress(writer, buyer, seller, **extra)["id"])


def payouts_asked() -> int:
    return EscrowStep.objects.exclude(action__in=("deploy", "fund-escrow", "change-milestone-status")).count()


def test_a_whole_release_pays_undelivered_milestones_to_the_seller_and_closes_the_order(
    chain, funded_user, trustless_work, writer, settler, django_assert_max_num_queries
):
    buyer, seller = funded_user("100.00"), funded_user("0")
    order = placed(writer, buyer, seller, milestones=MILESTONES)
    order_milestone_complete(
        order=order,
        ref="draft",
        actor=SYSTEM,
        evidence_text="First draft attached",
        evidence_link="https://example.com/draft",
        evidence_file=SimpleUploadedFile("draft.pdf", b"%PDF-1.4 draft", content_type="application/pdf"),
    )

    with django_assert_max_num_queries(13):  # session, user, permissions, order, escrow, milestones: none per row
        page = settler.get(order_url(order)).content.decode()
    for button in ("Release to seller", "Release milestone draft", "Release milestone final", "Refund buyer"):
        assert button in page
    assert release_url(order) in page and milestone_url(order, "final") in page
    assert "30.00" in page and "10.00" in page and "20.00" in page
    assert "300000000" not in page and "100000000" not in page  # dollars, never stroops
    evidence_url = reverse("order-evidence", args=[order.public_id, "draft"])
    assert "First draft attached" in page and 'href="https://example.com/draft"' in page
    assert f'href="{evidence_url}"' in page and "evidence_text" not in page  # a download link, no raw fields
    assert settler.get(evidence_url).status_code == 200

    confirm_page = settler.get(release_url(order)).content.decode()
    # Each milestone is its own payout on chain, its fees rounded on their own: 0.3 % and 5 %.
    assert "$30.00" in confirm_page and "$0.09" in confirm_page and "$1.50" in confirm_page
    assert "$28.41" in confirm_page and seller.email in confirm_page
    assert "Not delivered yet, paid anyway: final" in confirm_page
    assert "csrfmiddlewaretoken" in confirm_page

    response = settler.post(release_url(order), FORM)

    assert response.status_code == 302, response.content.decode()
    assert response.url == order_url(order)
    assert note(response) == "Released to the seller: the payout is confirmed on chain and the order closed."
    closed = Order.objects.get(pk=order.pk)
    assert (closed.status, closed.outcome) == (Order.Status.CLOSED, Order.Outcome.RELEASED)
    assert set(closed.milestones.values_list("status", flat=True)) == {OrderMilestone.Status.RELEASED}
    assert user_accounts(seller)[0].balance == net(10 * USD) + net(20 * USD) == 28_4100000
    assert user_accounts(buyer)[1].balance == 0
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(), buyer, seller)
    audit = AuditLog.objects.get(action="order.manually_released")
    assert (audit.actor_type, audit.actor_id, audit.resource_id) == ("SUPPORT", settler.user.public_id, order.public_id)
    assert audit.payload_after["reason"] == FORM["reason"]
    assert audit.payload_after["undeliveredMilestones"] == ["final"]
    assert (audit.payload_after["amount"], audit.payload_after["netAmount"]) == ("30.00", "28.41")
    assert "Release to seller" not in settler.get(order_url(order)).content.decode()  # nothing left to settle


def test_milestones_are_released_one_by_one_delivered_or_not(chain, funded_user, trustless_work, writer, settler):
    buyer, seller = funded_user("100.00"), funded_user("0")
    order = placed(writer, buyer, seller, milestones=MILESTONES)
    confirm_page = settler.get(milestone_url(order, "final")).content.decode()
    assert "$20.00" in confirm_page and "$18.94" in confirm_page and "milestone final" in confirm_page

    first = settler.post(milestone_url(order, "final"), {**FORM, "reason": "Final approved on the phone"})

    assert note(first) == "Milestone final released to the seller: the payout is confirmed on chain."
    assert Order.objects.get(pk=order.pk).status == Order.Status.IN_PROGRESS
    statuses = dict(OrderMilestone.objects.values_list("ref", "status"))
    assert statuses == {"draft": OrderMilestone.Status.OPEN, "final": OrderMilestone.Status.RELEASED}
    assert user_accounts(seller)[0].balance == net(20 * USD)
    audit = AuditLog.objects.get(action="order.milestone_manually_released")
    assert (audit.actor_id, audit.payload_after["milestoneRef"]) == (settler.user.public_id, "final")
    assert audit.payload_after["undeliveredMilestones"] == ["final"]
    page = settler.get(order_url(order)).content.decode()
    assert "Release milestone draft" in page and "Release milestone final" not in page

    second = settler.post(milestone_url(order, "draft"), FORM)

    assert note(second) == "Milestone draft released to the seller: the payout is confirmed on chain."
    assert Order.objects.get(pk=order.pk).status == Order.Status.CLOSED
    assert user_accounts(seller)[0].balance == net(10 * USD) + net(20 * USD)
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(), buyer, seller)


def test_a_refund_returns_the_escrow_to_the_buyer(chain, funded_user, trustless_work, writer, settler):
    buyer, seller = funded_user("100.00"), funded_user("0")
    order = placed(writer, buyer, seller)
    confirm_page = settler.get(refund_url(order)).content.decode()
    assert "$30.00" in confirm_page and "$28.41" in confirm_page and buyer.email in confirm_page
    assert "Not delivered yet" not in confirm_page

    response = settler.post(refund_url(order), {**FORM, "reason": "The seller closed their shop"})

    assert note(response) == "Refunded to the buyer: the payout is confirmed on chain and the order closed."
    closed = Order.objects.get(pk=order.pk)
    assert (closed.status, closed.outcome) == (Order.Status.CLOSED, Order.Outcome.REFUNDED)
    assert user_accounts(buyer)[0].balance == 70 * USD + net(30 * USD)
    assert user_accounts(buyer)[1].balance == 0 and user_accounts(seller)[0].balance == 0
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(), buyer, seller)
    audit = AuditLog.objects.get(action="order.manually_refunded")
    assert (audit.actor_type, audit.actor_id) == ("SUPPORT", settler.user.public_id)
    assert (audit.payload_after["reason"], audit.payload_after["paidTo"]) == ("The seller closed their shop", "buyer")


def test_nothing_happens_without_a_reason_and_a_confirmation(chain, funded_user, trustless_work, writer, settler):
    buyer, seller = funded_user("100.00"), funded_user("0")
    order = placed(writer, buyer, seller)
    asked = payouts_asked()

    empty = settler.post(release_url(order), {})
    assert empty.status_code == 200
    assert set(empty.context["form"].errors) == {"reason", "confirm"}
    blank_reason = settler.post(release_url(order), {"reason": "   ", "confirm": "on"})
    assert list(blank_reason.context["form"].errors) == ["reason"]
    assert "This field is required." in blank_reason.content.decode()
    unconfirmed = settler.post(refund_url(order), {"reason": FORM["reason"]})
    assert list(unconfirmed.context["form"].errors) == ["confirm"]

    with pytest.raises(ServiceError) as refused:  # the service refuses too, by its field
        order_settle_manually(order=order, action="release", reason=" ", staff_user=settler.user)
    assert (refused.value.code, refused.value.field) == ("VALIDATION_ERROR", "reason")

    assert Order.objects.get(pk=order.pk).status == Order.Status.IN_PROGRESS
    assert payouts_asked() == asked
    assert not AuditLog.objects.filter(action__startswith="order.manually").exists()


def test_staff_without_the_permission_get_403_and_no_buttons(chain, funded_user, trustless_work, writer, client):
    buyer, seller = funded_user("100.00"), funded_user("0")
    order = placed(writer, buyer, seller, milestones=MILESTONES)
    reader = UserFactory(is_staff=True)
    reader.user_permissions.set(Permission.objects.filter(codename="view_order"))
    client.force_login(reader)

    page = client.get(order_url(order))
    assert page.status_code == 200 and order.public_id in page.content.decode()
    assert "Release to seller" not in page.content.decode() and "Refund buyer" not in page.content.decode()
    for url in (release_url(order), refund_url(order), milestone_url(order, "draft")):
        assert client.get(url).status_code == 403
        assert client.post(url, FORM).status_code == 403
    with pytest.raises(ServiceError) as refused:
        order_settle_manually(order=order, action="refund", reason="because", staff_user=reader)
    assert refused.value.code == "FORBIDDEN"

    client.force_login(buyer)  # a member is sent to the admin's login
    response = client.post(release_url(order), FORM)
    assert response.status_code == 302 and response.url.startswith(reverse("admin:login"))

    assert Order.objects.get(pk=order.pk).status == Order.Status.IN_PROGRESS
    assert not EscrowStep.objects.filter(action__in=PAYOUT_STEPS).exists()
    assert not AuditLog.objects.filter(action__startswith="order.manually").exists()


def test_a_disputed_order_is_settled_from_its_dispute_only(chain, funded_user, trustless_work, writer, settler):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = disputed(writer, buyer, seller)
    order = Order.objects.get(public_id=dispute["orderId"])
    asked = payouts_asked()

    page = settler.get(order_url(order)).content.decode()
    assert "Release to seller" not in page and "Refund buyer" not in page
    assert "In dispute: settle it from the dispute" in page
    for url in (release_url(order), refund_url(order)):
        response = settler.post(url, FORM)
        assert response.status_code == 302 and response.url == order_url(order)
        assert note(response) == "This order is in dispute: settle it from the dispute's Resolve page, not by hand."

    with pytest.raises(ServiceError) as refused:  # under the lock too, whatever the page showed
        order_settle_manually(order=order, action="release", reason="stuck", staff_user=settler.user)
    assert (refused.value.code, refused.value.details["disputeId"]) == ("DISPUTE_ALREADY_OPEN", dispute["id"])
    assert "Resolve page" in refused.value.message

    assert Order.objects.get(pk=order.pk).status == Order.Status.DISPUTED
    assert payouts_asked() == asked
    assert not AuditLog.objects.filter(action__startswith="order.manually").exists()


def test_a_provider_outage_during_the_release_leaves_it_on_its_way_and_resumable(
    chain, funded_user, trustless_work, writer, settler, settings
):
    settings.OFFERHUB_SYNC_WAIT_SECONDS = 0.5
    buyer, seller = funded_user("100.00"), funded_user("0")
    order = placed(writer, buyer, seller)
    outage = fault("release-funds", 503)  # every call, until it is cleared

    response = settler.post(release_url(order), FORM)

    assert response.status_code == 302
    assert note(response).startswith("The payout is on its way on chain")
    assert Order.objects.get(pk=order.pk).status == Order.Status.RELEASE_REQUESTED  # asked, not paid
    assert Escrow.objects.get().status == Escrow.Status.RELEASING
    release = EscrowStep.objects.get(action="release-funds")
    assert release.status in EscrowStep.OPEN and release.failures >= 1 and release.error_code
    assert user_accounts(seller)[0].balance == 0
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(), buyer, seller)
    assert settler.get(release_url(order)).status_code == 302  # no second release while this one runs
    outage.delete()

    # Support asks the escrow's steps to run now (the escrow's "Retry now"): paid once.
    escrow = Escrow.objects.get()
    retry = settler.post(
        reverse("admin:escrow_escrow_changelist"), {"action": "retry_now", "_selected_action": [escrow.pk]}
    )
    assert retry.status_code == 302

    assert Order.objects.get(pk=order.pk).status == Order.Status.CLOSED
    assert SandboxEscrowCall.objects.filter(action="release-funds", applied_at__isnull=False).count() == 1
    assert user_accounts(seller)[0].balance == net(30 * USD)
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(), buyer, seller)
    assert AuditLog.objects.filter(action="order.manually_released").count() == 1


def test_a_release_the_chain_refuses_leaves_the_money_in_escrow_to_try_again(
    chain, funded_user, trustless_work, writer, settler
):
    buyer, seller = funded_user("100.00"), funded_user("0")
    order = placed(writer, buyer, seller)
    refusal = fault("release-funds", 400, remaining=1)

    response = settler.post(release_url(order), FORM)

    message = note(response)
    assert message.startswith("The chain refused the payout (Trustless Work refused release-funds")
    assert "The order is in progress and the money is still in its escrow" in message
    assert Order.objects.get(pk=order.pk).status == Order.Status.IN_PROGRESS
    assert Escrow.objects.get().status == Escrow.Status.FUNDED
    assert user_accounts(seller)[0].balance == 0
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(), buyer, seller)
    refusal.delete()

    again = settler.post(release_url(order), FORM)

    assert note(again) == "Released to the seller: the payout is confirmed on chain and the order closed."
    assert Order.objects.get(pk=order.pk).status == Order.Status.CLOSED
    assert user_accounts(seller)[0].balance == net(30 * USD)
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(), buyer, seller)
    assert AuditLog.objects.filter(action="order.manually_released").count() == 2


def test_only_support_may_release_undelivered_milestones(chain, funded_user, trustless_work, writer):
    buyer, seller = funded_user("100.00"), funded_user("0")
    order = placed(writer, buyer, seller, milestones=MILESTONES)

    with pytest.raises(ServiceError) as refused:  # the override is support's, not the buyer's
        order_release(order=order, actor=OrderActor.for_user(buyer), undelivered_ok=True)
    assert refused.value.code == "INVALID_STATE" and refused.value.details["open"] == ["draft", "final"]
    with pytest.raises(ServiceError):
        order_milestone_release(order=order, ref="draft", actor=OrderActor.for_user(buyer), undelivered_ok=True)
    assert Order.objects.get(pk=order.pk).status == Order.Status.IN_PROGRESS
    assert not EscrowStep.objects.filter(action__in=PAYOUT_STEPS).exists()


def test_a_milestone_payout_held_up_by_the_provider_is_not_asked_twice_and_resumes(
    chain, funded_user, trustless_work, writer, settler, settings
):
    settings.OFFERHUB_SYNC_WAIT_SECONDS = 0.5
    buyer, seller = funded_user("100.00"), funded_user("0")
    order = placed(writer, buyer, seller, milestones=MILESTONES)
    outage = fault("release-milestone-funds", 503)

    response = settler.post(milestone_url(order, "final"), FORM)

    assert note(response).startswith("The payout is on its way on chain")
    assert OrderMilestone.objects.get(ref="final").status == OrderMilestone.Status.OPEN
    again = settler.get(milestone_url(order, "final"))
    assert again.status_code == 302 and note(again) == "milestone 'final' is already being paid out"
    outage.delete()
    escrow = Escrow.objects.get()
    settler.post(reverse("admin:escrow_escrow_changelist"), {"action": "retry_now", "_selected_action": [escrow.pk]})

    assert OrderMilestone.objects.get(ref="final").status == OrderMilestone.Status.RELEASED
    assert Order.objects.get(pk=order.pk).status == Order.Status.IN_PROGRESS
    assert user_accounts(seller)[0].balance == net(20 * USD)
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(), buyer, seller)
    assert AuditLog.objects.filter(action="order.milestone_manually_released").count() == 1
