"""Order services over the real escrow flow against the sandbox (ledger and chain agree)."""

from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from escrow.models import Escrow
from marketplace.models import Order, OrderMilestone
from marketplace.orders import (
    SYSTEM,
    OrderActor,
    order_cancel,
    order_checkout,
    order_create,
    order_dispute,
    order_escrow_create,
    order_escrow_fund,
    order_milestone_complete,
    order_milestone_release,
    order_refund,
    order_release,
    order_reserve,
    orders_release_inspected,
    seller_net,
)
from offerhub.errors import ServiceError
from payments.ledger import user_accounts
from tests.escrow.test_lifecycle import USD, ledger_equals_chain
from tests.factories import ListingFactory

pytestmark = pytest.mark.django_db(transaction=True)


def listing_of(seller, price_cents: int, milestones=()):
    listing = ListingFactory(seller=seller, price_cents=price_cents)
    for position, (title, cents) in enumerate(milestones):
        listing.milestones.create(position=position, title=title, amount_cents=cents)
    return listing


def test_checkout_runs_to_in_progress_then_delivery_and_approval_pay_the_seller(chain, funded_user, trustless_work):
    buyer, seller = funded_user("100.00"), funded_user("0")
    listing = listing_of(seller, 4_000)
    order = order_checkout(buyer=buyer, listing=listing, checkout_token="tok-1")
    assert order.status == Order.Status.IN_PROGRESS  # reserve → deploy → fund ran in the background
    assert order_checkout(buyer=buyer, listing=listing, checkout_token="tok-1").pk == order.pk  # double click
    escrow = Escrow.objects.get(engagement_id=order.public_id)
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)

    with pytest.raises(ServiceError) as refused:
        order_milestone_complete(order=order, ref=None, actor=OrderActor.for_user(buyer))
    assert refused.value.code == "FORBIDDEN"  # a buyer cannot mark delivered
    order_milestone_complete(order=order, ref=None, actor=OrderActor.for_user(seller), evidence_text="Done")
    order.refresh_from_db()
    assert order.delivered_at is not None
    with pytest.raises(ServiceError) as refused:
        order_release(order=order, actor=OrderActor.for_user(seller))
    assert refused.value.code == "FORBIDDEN"  # a seller cannot release

    order_release(order=order, actor=OrderActor.for_user(buyer))
    order.refresh_from_db()
    assert (order.status, order.outcome) == (Order.Status.CLOSED, Order.Outcome.RELEASED)
    assert user_accounts(seller)[0].balance == seller_net(amount=40 * USD)
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)
    assert any("paid" in message.subject for message in mail.outbox)


def test_multi_release_orders_pay_milestone_by_milestone(chain, funded_user, trustless_work):
    buyer, seller = funded_user("100.00"), funded_user("0")
    listing = listing_of(seller, 3_000, [("Draft", 1_000), ("Final", 2_000)])
    order = order_checkout(buyer=buyer, listing=listing, checkout_token="tok-m")
    assert order.status == Order.Status.IN_PROGRESS
    seller_actor, buyer_actor = OrderActor.for_user(seller), OrderActor.for_user(buyer)
    order_milestone_complete(order=order, ref="m1", actor=seller_actor, evidence_link="https://example.com/draft")
    order_milestone_release(order=order, ref="m1", actor=buyer_actor)
    assert OrderMilestone.objects.get(order=order, ref="m1").status == OrderMilestone.Status.RELEASED
    order.refresh_from_db()
    assert order.status == Order.Status.IN_PROGRESS
    order_milestone_complete(order=order, ref="m2", actor=seller_actor, evidence_text="Final files")
    order_milestone_release(order=order, ref="m2", actor=buyer_actor)
    order.refresh_from_db()
    assert order.status == Order.Status.CLOSED
    net = seller_net(amount=10 * USD) + seller_net(amount=20 * USD)
    assert user_accounts(seller)[0].balance == net
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(engagement_id=order.public_id), buyer, seller)


def test_the_api_flow_step_by_step_and_a_seller_refund(chain, funded_user, trustless_work):
    buyer, seller = funded_user("50.00"), funded_user("0")
    order, created = order_create(buyer=buyer, seller=seller, amount=20 * USD, title="Audit", actor=SYSTEM)
    assert created and order.status == Order.Status.ORDER_CREATED
    order_reserve(order=order, actor=SYSTEM)
    order_escrow_create(order=order, actor=SYSTEM)
    order.refresh_from_db()
    assert order.status == Order.Status.ESCROW_FUNDING
    order_escrow_fund(order=order, actor=SYSTEM)
    order.refresh_from_db()
    assert order.status == Order.Status.IN_PROGRESS
    with pytest.raises(ServiceError) as again:
        order_escrow_fund(order=order, actor=SYSTEM)
    assert again.value.code == "ESCROW_ALREADY_FUNDED"
    order_refund(order=order, actor=OrderActor.for_user(seller), reason="Cannot deliver")
    order.refresh_from_db()
    assert (order.status, order.outcome) == (Order.Status.CLOSED, Order.Outcome.REFUNDED)
    escrow = Escrow.objects.get(engagement_id=order.public_id)
    assert escrow.status == Escrow.Status.REFUNDED
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)


def test_insufficient_balance_is_a_clear_error_and_holds_nothing(chain, funded_user, trustless_work):
    buyer, seller = funded_user("5.00"), funded_user("0")
    listing = listing_of(seller, 2_000)
    with pytest.raises(ServiceError) as short:
        order_checkout(buyer=buyer, listing=listing, checkout_token="tok-poor")
    assert short.value.code == "INSUFFICIENT_FUNDS"
    assert not Order.objects.exists()
    assert user_accounts(buyer)[1].balance == 0


def test_cancel_before_funding_voids_the_hold(chain, funded_user, trustless_work):
    buyer, seller = funded_user("50.00"), funded_user("0")
    order, _ = order_create(buyer=buyer, seller=seller, amount=20 * USD, title="Logo", actor=SYSTEM)
    order_reserve(order=order, actor=OrderActor.for_user(buyer))
    assert user_accounts(buyer)[1].balance == 20 * USD
    order_cancel(order=order, actor=OrderActor.for_user(buyer), reason="changed my mind")
    order.refresh_from_db()
    assert (order.status, order.outcome) == (Order.Status.CLOSED, Order.Outcome.CANCELED)
    assert user_accounts(buyer)[0].balance == 50 * USD and user_accounts(buyer)[1].balance == 0


def test_a_dispute_freezes_the_escrow_on_chain(chain, funded_user, trustless_work):
    buyer, seller = funded_user("50.00"), funded_user("0")
    order = order_checkout(buyer=buyer, listing=listing_of(seller, 1_500), checkout_token="tok-d")
    order_dispute(order=order, actor=OrderActor.for_user(buyer), opened_by="buyer", reason="NOT_DELIVERED")
    order.refresh_from_db()
    escrow = Escrow.objects.get(engagement_id=order.public_id)
    assert order.status == Order.Status.DISPUTED and escrow.status == Escrow.Status.DISPUTED
    (on_chain,) = trustless_work.get_escrows([escrow.contract_id])
    assert on_chain["flags"]["disputed"] is True
    with pytest.raises(ServiceError) as frozen:
        order_release(order=order, actor=OrderActor.for_user(buyer))
    assert frozen.value.code == "DISPUTE_ALREADY_OPEN"


def test_delivered_orders_are_released_after_the_inspection_window(chain, funded_user, trustless_work, settings):
    settings.OFFERHUB_INSPECTION_WINDOW_HOURS = 72
    buyer, seller = funded_user("50.00"), funded_user("0")
    order = order_checkout(buyer=buyer, listing=listing_of(seller, 1_000), checkout_token="tok-i")
    order_milestone_complete(order=order, ref=None, actor=OrderActor.for_user(seller))
    assert orders_release_inspected() == 0  # still within the window
    later = timezone.now() + timezone.timedelta(hours=73)
    assert orders_release_inspected(now=later) == 1
    order.refresh_from_db()
    assert order.status == Order.Status.CLOSED
    assert user_accounts(seller)[0].balance == seller_net(amount=10 * USD)
    assert Decimal(seller_net(amount=10 * USD)) > 0


def test_two_concurrent_confirmations_make_one_order(chain, funded_user, trustless_work):
    import threading

    from django.db import connection

    buyer, seller = funded_user("100.00"), funded_user("0")
    listing = listing_of(seller, 2_500)
    barrier = threading.Barrier(2)
    results, errors = [], []

    def confirm():
        try:
            barrier.wait()
            results.append(order_checkout(buyer=buyer, listing=listing, checkout_token="same-form").pk)
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=confirm) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(results)) == 1
    assert Order.objects.count() == 1
    assert user_accounts(buyer)[0].balance == 75 * USD  # held (then escrowed) once


def refuse_once(path: str) -> None:
    from sandbox.models import SandboxFault

    SandboxFault.objects.create(service="trustless-work", path_contains=path, status_code=400, remaining=1)


def test_a_refused_milestone_release_can_be_asked_for_again(chain, funded_user, trustless_work):
    buyer, seller = funded_user("100.00"), funded_user("0")
    order = order_checkout(
        buyer=buyer, listing=listing_of(seller, 2_000, [("A", 500), ("B", 1_500)]), checkout_token="r"
    )
    order_milestone_complete(order=order, ref="m1", actor=OrderActor.for_user(seller))
    refuse_once("release-milestone-funds")
    order_milestone_release(order=order, ref="m1", actor=OrderActor.for_user(buyer))
    assert OrderMilestone.objects.get(order=order, ref="m1").status == OrderMilestone.Status.COMPLETED
    order_milestone_release(order=order, ref="m1", actor=OrderActor.for_user(buyer))
    assert OrderMilestone.objects.get(order=order, ref="m1").status == OrderMilestone.Status.RELEASED
    assert user_accounts(seller)[0].balance == seller_net(amount=5 * USD)


def test_a_refund_whose_dispute_is_refused_returns_the_order_to_in_progress(chain, funded_user, trustless_work):
    buyer, seller = funded_user("50.00"), funded_user("0")
    order = order_checkout(buyer=buyer, listing=listing_of(seller, 1_000), checkout_token="rf")
    refuse_once("dispute-escrow")
    order_refund(order=order, actor=OrderActor.for_user(seller), reason="cannot deliver")
    order.refresh_from_db()
    escrow = Escrow.objects.get(engagement_id=order.public_id)
    assert (order.status, escrow.status) == (Order.Status.IN_PROGRESS, Escrow.Status.FUNDED)
    order_refund(order=order, actor=OrderActor.for_user(seller), reason="cannot deliver")
    order.refresh_from_db()
    assert (order.status, order.outcome) == (Order.Status.CLOSED, Order.Outcome.REFUNDED)
    ledger_equals_chain(chain, trustless_work, escrow, buyer, seller)


@pytest.mark.django_db(transaction=True)
def test_a_locked_order_leaves_its_buyer_and_seller_rows_free():
    """Orders are locked alone (FOR UPDATE OF the order): two orders of one seller never wait
    on the seller's row, and a member's own updates never wait on their orders."""
    import threading

    from django.db import connection, transaction

    from marketplace.models import User
    from marketplace.orders import SYSTEM, _locked
    from tests.factories import UserFactory

    buyer, seller = UserFactory(), UserFactory()
    order, _ = order_create(buyer=buyer, seller=seller, amount=10 * 10_000_000, title="Lock", actor=SYSTEM)
    locked, release = threading.Event(), threading.Event()

    def hold_the_order():
        try:
            with transaction.atomic():
                _locked(order)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_order)
    holder.start()
    try:
        assert locked.wait(10)
        with transaction.atomic():  # NOWAIT: an error at once if the order's lock covered these rows
            assert len(User.objects.select_for_update(nowait=True).filter(pk__in=[buyer.pk, seller.pk])) == 2
    finally:
        release.set()
        holder.join(10)
