"""The web side of orders: checkout, the order page and its actions, the live WebSocket, the lists."""

import re

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.http import Http404
from django.test import Client, RequestFactory
from django.urls import reverse
from django.views.static import serve as static_serve

from disputes.models import Dispute
from escrow.models import Escrow
from marketplace.models import Order, OrderMilestone
from marketplace.order_consumers import OrderEventsConsumer
from marketplace.order_forms import EVIDENCE_MAX_BYTES
from marketplace.orders import seller_net
from offerhub.services import event_publish
from payments.ledger import ledger_account, ledger_transfer, user_accounts
from payments.models import LedgerAccount, Wallet
from tests.factories import ListingFactory, ListingMilestoneFactory, UserFactory

USD = 10_000_000
S = Order.Status
TOKEN_FIELD = re.compile(r'name="token" value="([^"]+)"')


def credit(user, dollars: int) -> None:
    """Money in the member's ledger balance, without the chain (for pages that only read it)."""
    ledger_transfer(
        idempotency_key=f"test-credit:{user.public_id}:{dollars}",
        kind="deposit",
        source=ledger_account(kind=LedgerAccount.Kind.EXTERNAL_STELLAR),
        destination=user_accounts(user)[0],
        amount=dollars * USD,
    )


def an_order(status=S.IN_PROGRESS, *, buyer=None, seller=None, milestones=0, **extra) -> Order:
    """An order row in `status` (no escrow behind it): for pages and permissions, not money."""
    order = Order.objects.create(
        buyer=buyer or UserFactory(),
        seller=seller or UserFactory(),
        amount=30 * USD,
        title=extra.pop("title", "Logo design"),
        status=status,
        **extra,
    )
    for position in range(milestones):
        OrderMilestone.objects.create(
            order=order, position=position, ref=f"m{position + 1}", title=f"Part {position + 1}", amount=1
        )
    return order


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def checkout_token(client, listing) -> str:
    page = client.get(reverse("checkout", args=[listing.public_id])).content.decode()
    return TOKEN_FIELD.search(page).group(1)


# --- Checkout ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_checkout_shows_price_balance_what_the_seller_receives_and_the_way_to_add_funds(settings):
    settings.OFFERHUB_PLATFORM_FEE_PERCENT = 5
    buyer = UserFactory()
    listing = ListingFactory(price_cents=4_000)
    ListingMilestoneFactory(listing=listing, title="Sketches", amount_cents=1_500)
    ListingMilestoneFactory(listing=listing, title="Final files", amount_cents=2_500)
    credit(buyer, 25)
    client = logged_in(buyer)
    response = client.get(f"/listings/{listing.public_id}/checkout/")
    page = response.content.decode()
    assert response.status_code == 200
    net = seller_net(amount=40 * USD) / USD
    assert 'data-testid="checkout-price">$40.00' in page
    assert 'data-testid="checkout-available">$25.00' in page
    assert f'data-testid="seller-receives">${net:.2f}' in page
    assert "Sketches" in page and "Final files" in page
    assert "You need <strong>$15.00</strong> more" in page
    back = f"/listings/{listing.public_id}/checkout/"  # the wallet brings the buyer back here (?next=)
    assert f'href="{reverse("wallet")}?next={back}" data-testid="add-funds"' in page
    assert re.search(r'data-testid="confirm"\s+disabled', page)
    assert "USDC" not in page and "XLM" not in page

    credit(buyer, 20)  # $45 now: enough
    page = client.get(f"/listings/{listing.public_id}/checkout/").content.decode()
    assert 'data-testid="add-funds"' not in page
    assert not re.search(r'data-testid="confirm"\s+disabled', page)
    assert checkout_token(client, listing) != checkout_token(client, listing)  # a fresh token per rendering


@pytest.mark.django_db
def test_checkout_asks_visitors_to_log_in_and_sellers_cannot_buy_their_own_listing():
    listing = ListingFactory()
    url = f"/listings/{listing.public_id}/checkout/"
    response = Client().get(url)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")

    seller = logged_in(listing.seller)
    response = seller.get(url, follow=True)
    assert response.redirect_chain[-1][0] == f"/listings/{listing.public_id}/"
    assert "your own listing" in response.content.decode()
    seller.post(url, {"token": "t" * 32, "price_cents": listing.price_cents})
    assert not Order.objects.exists()
    assert logged_in(UserFactory()).get("/listings/lst_nope/checkout/").status_code == 404


@pytest.mark.django_db
def test_insufficient_balance_is_a_clear_error_and_holds_nothing():
    buyer = UserFactory()
    credit(buyer, 5)
    listing = ListingFactory(price_cents=2_000)
    client = logged_in(buyer)
    token = checkout_token(client, listing)
    response = client.post(f"/listings/{listing.public_id}/checkout/", {"token": token, "price_cents": 2_000})
    page = response.content.decode()
    assert response.status_code == 200
    assert "Your available balance is not enough for this order. Nothing was charged or put on hold" in page
    assert 'data-testid="add-funds"' in page
    assert not Order.objects.exists()
    available, held = user_accounts(buyer)
    assert (available.balance, held.balance) == (5 * USD, 0)


@pytest.mark.django_db
def test_a_price_changed_since_the_page_was_shown_is_confirmed_again():
    buyer = UserFactory()
    credit(buyer, 100)
    listing = ListingFactory(price_cents=2_000)
    client = logged_in(buyer)
    token = checkout_token(client, listing)
    listing.price_cents = 2_500
    listing.save()
    page = client.post(f"/listings/{listing.public_id}/checkout/", {"token": token, "price_cents": 2_000})
    assert "changed the price to $25.00" in page.content.decode()
    assert not Order.objects.exists()


@pytest.mark.django_db
def test_checkout_is_csrf_protected():
    buyer = UserFactory()
    listing = ListingFactory()
    client = Client(enforce_csrf_checks=True)
    client.force_login(buyer)
    response = client.post(f"/listings/{listing.public_id}/checkout/", {"token": "t" * 32, "price_cents": 5_000})
    assert response.status_code == 403
    assert not Order.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_double_submit_places_one_order_and_the_order_runs_to_in_progress(chain, funded_user, trustless_work):
    buyer, seller = funded_user("100.00"), funded_user("0")
    listing = ListingFactory(seller=seller, price_cents=4_000)
    client = logged_in(buyer)
    token = checkout_token(client, listing)
    url = f"/listings/{listing.public_id}/checkout/"
    first = client.post(url, {"token": token, "price_cents": 4_000})
    second = client.post(url, {"token": token, "price_cents": 4_000})  # a double click, or the back button
    order = Order.objects.get()
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"] == f"/orders/{order.public_id}/"
    assert order.status == S.IN_PROGRESS and order.buyer == buyer and order.amount == 40 * USD
    available, held = user_accounts(buyer)
    assert (available.balance, held.balance) == (60 * USD, 0)  # paid into the escrow once

    page = client.get(first["Location"]).content.decode()
    assert 'data-testid="order-status" role="status">In progress<' in page
    for words in ("Order placed", "$40.00 put on hold", "Payment protection set up", "secured in escrow"):
        assert words in page
    escrow = Escrow.objects.get(engagement_id=order.public_id)
    assert f'href="/escrow/{escrow.contract_id}/" data-testid="escrow-link"' in page
    assert 'data-testid="deliver-form"' not in page  # the buyer does not deliver


# --- The order page: who sees what --------------------------------------------------------------------


@pytest.mark.django_db
def test_strangers_get_404_for_the_page_its_fragment_and_every_action():
    order = an_order()
    stranger = logged_in(UserFactory())
    base = f"/orders/{order.public_id}/"
    assert stranger.get(base).status_code == 404
    assert stranger.get(base + "live/").status_code == 404
    for action in ("deliver", "release", "refund", "dispute", "cancel", "retry"):
        assert stranger.post(base + action + "/", {"reason": "x", "evidence_text": "x"}).status_code == 404
    assert logged_in(order.buyer).get("/orders/ord_doesnotexist/").status_code == 404
    response = Client().get(base)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
def test_each_side_sees_only_its_own_buttons():
    order = an_order(S.IN_PROGRESS)
    buyer_page = logged_in(order.buyer).get(f"/orders/{order.public_id}/").content.decode()
    seller_page = logged_in(order.seller).get(f"/orders/{order.public_id}/").content.decode()
    assert 'data-testid="deliver-form"' not in buyer_page and "Refund the buyer" not in buyer_page
    assert 'data-testid="deliver-form"' in seller_page and "Refund the buyer" in seller_page
    assert 'name="evidence_file"' in seller_page  # an order without milestones takes a file too (private)
    assert 'data-testid="approve"' not in seller_page
    assert 'data-testid="approve"' not in buyer_page  # nothing delivered yet
    assert "Open a dispute" in buyer_page and "Open a dispute" in seller_page
    assert "Cancel the order" not in buyer_page  # too late once the payment is secured
    assert 'role="status">In progress<' in buyer_page

    support = UserFactory(is_staff=True)
    support_page = logged_in(support).get(f"/orders/{order.public_id}/").content.decode()
    assert "Support acts on orders from the backoffice" in support_page
    assert 'data-testid="deliver-form"' not in support_page and "Open a dispute" not in support_page


@pytest.mark.django_db
def test_the_buyer_cannot_deliver_and_the_seller_cannot_release_through_the_web():
    order = an_order(S.IN_PROGRESS)
    buyer, seller = logged_in(order.buyer), logged_in(order.seller)
    base = f"/orders/{order.public_id}/"
    assert buyer.post(base + "deliver/", {"evidence_text": "Done"}).status_code == 403
    assert buyer.post(base + "refund/", {"reason": "x"}).status_code == 403
    assert seller.post(base + "release/").status_code == 403
    assert seller.post(base + "retry/").status_code == 403
    support = logged_in(UserFactory(is_staff=True))
    assert support.post(base + "release/").status_code == 403  # support acts from the backoffice
    order.refresh_from_db()
    assert order.status == S.IN_PROGRESS and order.delivered_at is None
    assert buyer.get(base + "deliver/").status_code == 405  # actions answer POST only


@pytest.mark.django_db
def test_a_refused_action_is_a_message_and_changes_nothing():
    order = an_order(S.ESCROW_FUNDING)
    client = logged_in(order.buyer)
    response = client.post(f"/orders/{order.public_id}/cancel/", follow=True)
    assert "That is not possible any more: the order is now “securing the payment”" in response.content.decode()
    order.refresh_from_db()
    assert order.status == S.ESCROW_FUNDING


@pytest.mark.django_db
def test_the_buyer_cancels_before_funding_and_the_hold_is_released():
    from marketplace.orders import OrderActor, order_reserve

    buyer = UserFactory()
    credit(buyer, 50)
    order = an_order(S.ORDER_CREATED, buyer=buyer)
    order_reserve(order=order, actor=OrderActor.for_user(buyer))
    client = logged_in(buyer)
    page = client.get(f"/orders/{order.public_id}/").content.decode()
    assert "Cancel the order" in page and "Try again" in page  # the escrow never started
    response = client.post(f"/orders/{order.public_id}/cancel/", {"reason": "changed my mind"}, follow=True)
    assert "Order canceled" in response.content.decode()
    order.refresh_from_db()
    assert (order.status, order.outcome) == (S.CLOSED, Order.Outcome.CANCELED)
    available, held = user_accounts(buyer)
    assert (available.balance, held.balance) == (50 * USD, 0)
    page = client.get(f"/orders/{order.public_id}/").content.decode()
    assert 'role="status">Canceled<' in page and "Order canceled · the hold was released" in page


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("tool.exe", b"MZ\x90\x00", "is not a file type we accept"),
        ("report.pdf", b"<html>not a pdf</html>", "does not look like a PDF file"),
        ("notes.txt", b"\x00\x01\x02binary", "does not look like a TXT file"),
        ("huge.zip", b"PK\x03\x04" + b"0" * EVIDENCE_MAX_BYTES, "is larger than 10 MB"),
    ],
)
@pytest.mark.django_db
def test_evidence_files_are_checked_before_anything_is_delivered(name, content, problem):
    order = an_order(S.IN_PROGRESS, milestones=1)
    client = logged_in(order.seller)
    upload = SimpleUploadedFile(name, content)
    response = client.post(
        f"/orders/{order.public_id}/deliver/", {"milestone": "m1", "evidence_file": upload}, follow=True
    )
    assert problem in response.content.decode()
    assert OrderMilestone.objects.get(order=order).status == OrderMilestone.Status.OPEN


@pytest.mark.django_db
def test_a_delivery_needs_something_to_show():
    order = an_order(S.IN_PROGRESS)
    response = logged_in(order.seller).post(f"/orders/{order.public_id}/deliver/", {}, follow=True)
    assert "Describe what you delivered, or add a link or a file" in response.content.decode()


# A refused form comes back as it was filled in, its problem by the field; nothing typed is lost.


@pytest.mark.django_db
def test_a_refused_delivery_keeps_what_the_seller_typed():
    order = an_order(S.IN_PROGRESS)
    response = logged_in(order.seller).post(
        f"/orders/{order.public_id}/deliver/",
        {"evidence_text": "The logo in three sizes & a style guide.", "evidence_link": "files at my drive"},
    )
    assert response.status_code == 200
    assert response.context["deliver_forms"][0][1].errors["evidence_link"] == ["Enter a valid URL."]
    page = response.content.decode()
    assert ">\nThe logo in three sizes &amp; a style guide.</textarea>" in page
    assert 'value="files at my drive"' in page and "Enter a valid URL." in page
    assert Order.objects.get(pk=order.pk).delivered_at is None


@pytest.mark.django_db
def test_a_refused_milestone_delivery_keeps_the_text_in_that_milestone_form():
    order = an_order(S.IN_PROGRESS, milestones=2)
    response = logged_in(order.seller).post(
        f"/orders/{order.public_id}/deliver/",
        {
            "milestone": "m2",
            "evidence_text": "Final files attached.",
            "evidence_file": SimpleUploadedFile("tool.exe", b"MZ\x90\x00"),
        },
    )
    assert response.status_code == 200
    first, second = (form for _, form in response.context["deliver_forms"])
    assert not first.is_bound and second.is_bound
    page = response.content.decode()
    assert 'id="deliver-1-evidence_text"' in page and ">\nFinal files attached.</textarea>" in page
    assert "“tool.exe” is not a file type we accept" in page
    assert OrderMilestone.objects.get(order=order, ref="m2").status == OrderMilestone.Status.OPEN


@pytest.mark.django_db
def test_a_refused_dispute_keeps_the_details_and_a_refused_refund_says_why_in_place():
    order = an_order(S.IN_PROGRESS)
    response = logged_in(order.buyer).post(
        f"/orders/{order.public_id}/dispute/", {"reason": "", "details": "No answer for two weeks."}
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert ">No answer for two weeks.</textarea>" in page and "Please say what went wrong." in page
    assert '<details class="mb-2" open data-kept-input>' in page  # the section stays open
    assert Order.objects.get(pk=order.pk).status == S.IN_PROGRESS

    response = logged_in(order.seller).post(f"/orders/{order.public_id}/refund/", {"reason": "  "})
    assert response.status_code == 200
    assert "Please say why." in response.content.decode()
    assert Order.objects.get(pk=order.pk).status == S.IN_PROGRESS


@pytest.mark.django_db
def test_a_form_the_order_no_longer_offers_falls_back_to_a_message():
    order = an_order(S.CLOSED, outcome=Order.Outcome.RELEASED)
    response = logged_in(order.buyer).post(f"/orders/{order.public_id}/dispute/", {"reason": ""}, follow=True)
    assert response.redirect_chain[-1][0] == f"/orders/{order.public_id}/"
    assert "Please say what went wrong." in response.content.decode()


# --- The whole road through the web, over the real escrow ---------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_seller_delivers_buyer_approves_and_the_seller_is_paid(chain, funded_user, trustless_work):
    buyer, seller = funded_user("50.00"), funded_user("0")
    buyer_client, seller_client, base = order_bought(buyer, seller)
    order = Order.objects.get()
    response = seller_client.post(
        base + "deliver/",
        {"evidence_text": "Final logo attached", "evidence_link": "https://files.example/logo"},
        follow=True,
    )
    page = response.content.decode()
    assert "Marked delivered" in page and "Waiting for the buyer to approve" in page
    page = buyer_client.get(base).content.decode()
    assert 'data-testid="approve"' in page and "released to the seller automatically" in page
    assert "https://files.example/logo" in page and "Final logo attached" in page

    response = buyer_client.post(base + "release/", follow=True)
    assert "the payment is on its way to the seller" in response.content.decode()
    order.refresh_from_db()
    assert (order.status, order.outcome) == (S.CLOSED, Order.Outcome.RELEASED)
    assert user_accounts(seller)[0].balance == seller_net(amount=20 * USD)
    page = seller_client.get(base).content.decode()
    assert "Closed · seller paid" in page and "(after fees)" in page
    assert "Nothing left to do" in page


def order_bought(buyer, seller, *, price_cents: int = 2_000):
    """The buyer checks out a listing of `price_cents` without milestones: (buyer's client,
    seller's client, the order page's path)."""
    listing = ListingFactory(seller=seller, price_cents=price_cents)
    buyer_client, seller_client = logged_in(buyer), logged_in(seller)
    base = buyer_client.post(
        f"/listings/{listing.public_id}/checkout/",
        {"token": checkout_token(buyer_client, listing), "price_cents": price_cents},
    )["Location"]
    return buyer_client, seller_client, base


def milestone_order_bought(buyer, seller):
    """The buyer checks out a $30 listing in two milestones ($10 "Draft", $20 "Final"):
    (buyer's client, seller's client, the order page's path)."""
    listing = ListingFactory(seller=seller, price_cents=3_000)
    ListingMilestoneFactory(listing=listing, position=0, title="Draft", amount_cents=1_000)
    ListingMilestoneFactory(listing=listing, position=1, title="Final", amount_cents=2_000)
    buyer_client, seller_client = logged_in(buyer), logged_in(seller)
    base = buyer_client.post(
        f"/listings/{listing.public_id}/checkout/",
        {"token": checkout_token(buyer_client, listing), "price_cents": 3_000},
    )["Location"]
    return buyer_client, seller_client, base


@pytest.mark.django_db(transaction=True)
def test_milestones_are_delivered_with_a_file_and_released_one_by_one(chain, funded_user, trustless_work):
    buyer, seller = funded_user("50.00"), funded_user("0")
    buyer_client, seller_client, base = milestone_order_bought(buyer, seller)
    order = Order.objects.get()
    assert order.status == S.IN_PROGRESS

    pdf = SimpleUploadedFile("draft.pdf", b"%PDF-1.4\n% a draft\n", content_type="application/pdf")
    seller_client.post(base + "deliver/", {"milestone": "m1", "evidence_text": "The draft", "evidence_file": pdf})
    draft = OrderMilestone.objects.get(order=order, ref="m1")
    assert draft.status == OrderMilestone.Status.COMPLETED and draft.evidence_file
    page = buyer_client.get(base).content.decode()
    assert "Approve “Draft” and release $10.00" in page
    evidence = reverse("order-evidence", args=[order.public_id, "m1"])
    assert evidence in page
    download = buyer_client.get(evidence)
    assert download.status_code == 200 and b"".join(download.streaming_content).startswith(b"%PDF")
    assert logged_in(UserFactory()).get(evidence).status_code == 404

    buyer_client.post(base + "release/", {"milestone": "m1"})
    assert OrderMilestone.objects.get(order=order, ref="m1").status == OrderMilestone.Status.RELEASED
    assert user_accounts(seller)[0].balance == seller_net(amount=10 * USD)
    page = buyer_client.get(base).content.decode()
    assert "$10.00 released to the seller" in page and ">paid<" in page


@pytest.mark.django_db(transaction=True)
def test_the_seller_refunds_and_the_buyer_opens_a_dispute(chain, funded_user, trustless_work):
    buyer, seller = funded_user("50.00"), funded_user("0")
    refunded, disputed = (
        ListingFactory(seller=seller, price_cents=1_000),
        ListingFactory(seller=seller, price_cents=1_500),
    )
    buyer_client, seller_client = logged_in(buyer), logged_in(seller)
    orders = []
    for listing in (refunded, disputed):
        token = checkout_token(buyer_client, listing)
        location = buyer_client.post(
            f"/listings/{listing.public_id}/checkout/", {"token": token, "price_cents": listing.price_cents}
        )["Location"]
        orders.append(location)

    response = seller_client.post(orders[0] + "refund/", {"reason": ""}, follow=True)
    assert "Please say why" in response.content.decode()
    response = seller_client.post(orders[0] + "refund/", {"reason": "Cannot take it on"}, follow=True)
    assert "Refund the buyer?" in response.content.decode()  # a refund is confirmed first: nothing moved yet
    assert Order.objects.get(public_id=orders[0].split("/")[-2]).status == S.IN_PROGRESS
    response = seller_client.post(
        orders[0] + "refund/", {"reason": "Cannot take it on", "confirmed": "yes"}, follow=True
    )
    assert "Refund started" in response.content.decode()

    response = buyer_client.post(orders[1] + "dispute/", {"reason": "late"}, follow=True)
    assert "Please say what went wrong" in response.content.decode()
    response = buyer_client.post(orders[1] + "dispute/", {"reason": "NOT_DELIVERED", "details": "Silence"}, follow=True)
    page = response.content.decode()
    assert "Dispute opened." in page and "A dispute is open" in page
    assert "Dispute opened by the buyer: not delivered" in page
    response = buyer_client.post(orders[1] + "release/", follow=True)
    assert "A dispute is open on this order" in response.content.decode()

    first, second = (Order.objects.get(public_id=location.split("/")[2]) for location in orders)
    assert (first.status, first.outcome) == (S.CLOSED, Order.Outcome.REFUNDED)
    assert second.status == S.DISPUTED
    case = Dispute.objects.get(order=second)  # support's queue has it
    assert (case.opened_by, case.reason, case.evidence) == ("BUYER", "NOT_DELIVERED", ["Silence"])
    # $10 back less the escrow's fees; $15 frozen in the disputed escrow.
    assert user_accounts(buyer)[0].balance == 25 * USD + seller_net(amount=10 * USD)


@pytest.mark.django_db(transaction=True)
def test_an_escrow_that_could_not_start_is_retried_from_the_order_page(chain, funded_user, trustless_work):
    buyer, seller = funded_user("50.00"), funded_user("0")
    Wallet.objects.filter(user=seller).update(status=Wallet.Status.PENDING)  # still being set up
    listing = ListingFactory(seller=seller, price_cents=1_000)
    client = logged_in(buyer)
    url = f"/listings/{listing.public_id}/checkout/"
    location = client.post(url, {"token": "retry-token-0123456789", "price_cents": 1_000})["Location"]
    order = Order.objects.get()
    assert order.status == S.FUNDS_RESERVED and user_accounts(buyer)[1].balance == 10 * USD
    page = client.get(location).content.decode()
    assert "we could not set up the payment protection yet" in page and "Try again" in page
    assert "Try again" not in logged_in(seller).get(location).content.decode()

    Wallet.objects.filter(user=seller).update(status=Wallet.Status.ACTIVE)
    response = client.post(location + "retry/", follow=True)
    assert "We are setting up the payment protection again" in response.content.decode()
    order.refresh_from_db()
    assert order.status == S.IN_PROGRESS and user_accounts(buyer)[1].balance == 0


# --- Live updates -------------------------------------------------------------------------------------


def _connect(user, order_id):
    communicator = WebsocketCommunicator(OrderEventsConsumer.as_asgi(), f"/ws/orders/{order_id}/")
    communicator.scope["user"] = user
    communicator.scope["url_route"] = {"kwargs": {"public_id": order_id}}
    return communicator


@pytest.mark.django_db(transaction=True)
def test_the_order_socket_accepts_the_buyer_and_the_seller_and_refuses_anyone_else():
    order = an_order()
    stranger = UserFactory()

    def publish():
        with transaction.atomic():
            event_publish(
                type="order.in_progress",
                aggregate_type="Order",
                aggregate_id=order.public_id,
                payload={"orderId": order.public_id, "escrowId": "esc_x"},
                user_id=order.buyer.public_id,  # the event names the buyer only: the seller hears it too
            )
            event_publish(type="order.created", aggregate_type="Order", aggregate_id="ord_other", payload={})

    async def scenario():
        sockets = [_connect(order.buyer, order.public_id), _connect(order.seller, order.public_id)]
        for socket in sockets:
            connected, _ = await socket.connect()
            assert connected
        await database_sync_to_async(publish)()
        for socket in sockets:
            message = await socket.receive_json_from(timeout=5)
            assert message["eventType"] == "order.in_progress" and set(message) == {"eventId", "eventType"}
            assert await socket.receive_nothing(timeout=0.3)  # not another order's events
            await socket.disconnect()

        refused = _connect(stranger, order.public_id)
        connected, code = await refused.connect()
        assert (connected, code) == (False, 4403)
        missing = _connect(order.buyer, "ord_doesnotexist")
        assert await missing.connect() == (False, 4403)
        anonymous = _connect(AnonymousUser(), order.public_id)
        assert await anonymous.connect() == (False, 4401)

    async_to_sync(scenario)()


@pytest.mark.django_db
def test_the_live_fragment_is_the_changing_part_of_the_page():
    order = an_order(S.ESCROW_CREATING)
    client = logged_in(order.seller)
    page = client.get(f"/orders/{order.public_id}/").content.decode()
    assert f'data-socket-path="/ws/orders/{order.public_id}/"' in page
    assert "js/order-live.js" in page
    fragment = client.get(f"/orders/{order.public_id}/live/")
    html = fragment.content.decode()
    assert fragment["Cache-Control"] == "no-store"
    assert html.lstrip().startswith('<div class="row g-4" id="order-live-root"')
    assert 'data-poll-seconds="3"' in html and 'data-settled="false"' in html
    assert "Setting up payment protection" in html and "<html" not in html


# --- Lists and query counts ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_purchases_and_sales_list_each_side_with_plain_status_words():
    buyer, seller = UserFactory(display_name="Bea"), UserFactory(display_name="Sam")
    an_order(S.IN_PROGRESS, buyer=buyer, seller=seller, title="Website audit")
    an_order(S.CLOSED, buyer=seller, seller=buyer, title="Copy editing", outcome=Order.Outcome.RELEASED)
    purchases = logged_in(buyer).get("/orders/purchases/").content.decode()
    assert "Website audit" in purchases and "Copy editing" not in purchases
    assert ">In progress<" in purchases and "Sam" in purchases
    sales = logged_in(buyer).get("/orders/sales/").content.decode()
    assert "Copy editing" in sales and ">Closed · seller paid<" in sales and "You receive" in sales
    assert 'href="/orders/purchases/"' in sales and 'href="/orders/sales/"' in sales  # nav links


@pytest.mark.django_db
def test_empty_lists_say_what_to_do():
    client = logged_in(UserFactory())
    purchases = client.get("/orders/purchases/").content.decode()
    assert "No purchases yet" in purchases and 'href="/listings/"' in purchases
    sales = client.get("/orders/sales/").content.decode()
    assert "No sales yet" in sales and 'href="/listings/mine/"' in sales


@pytest.mark.django_db
def test_lists_are_paginated():
    buyer = UserFactory()
    seller = UserFactory()
    for n in range(23):
        an_order(buyer=buyer, seller=seller, title=f"Order {n}")
    client = logged_in(buyer)
    first = client.get("/orders/purchases/").content.decode()
    assert first.count('data-testid="order-row"') == 20 and "Page 1 of 2" in first
    second = client.get("/orders/purchases/?page=2").content.decode()
    assert second.count('data-testid="order-row"') == 3


@pytest.mark.parametrize("count", [3, 25])
@pytest.mark.django_db
def test_page_queries_do_not_grow_with_the_rows(count, django_assert_max_num_queries):
    buyer, seller = UserFactory(), UserFactory()
    for _ in range(count):
        an_order(buyer=buyer, seller=seller)
    order = an_order(buyer=buyer, seller=seller, milestones=count)
    escrow = Escrow.objects.create(
        engagement_id=order.public_id,
        type=Escrow.Type.MULTI,
        title=order.title,
        buyer=buyer,
        seller=seller,
        hold_reference=order.public_id,
        amount=order.amount,
        contract_id="C" + "A" * 55,
    )
    for n in range(count):
        escrow.milestones.create(index=n, ref=f"m{n + 1}", title=f"Part {n + 1}", amount=1)
        event_publish(
            type="order.funds_reserved",
            aggregate_type="Order",
            aggregate_id=order.public_id,
            payload={"amount": "1.00"},
        )
    buyer_client, seller_client = logged_in(buyer), logged_in(seller)
    with django_assert_max_num_queries(4):
        assert buyer_client.get("/orders/purchases/").content.decode().count('data-testid="order-row"') == min(
            count + 1, 20
        )
    with django_assert_max_num_queries(5):  # one more than purchases: the page's escrows' fee percents
        seller_client.get("/orders/sales/")
    with django_assert_max_num_queries(8):
        page = buyer_client.get(f"/orders/{order.public_id}/").content.decode()
    assert page.count('data-testid="milestone"') == count
    with django_assert_max_num_queries(8):
        seller_client.get(f"/orders/{order.public_id}/live/")


@pytest.mark.django_db(transaction=True)
def test_delivered_files_live_outside_the_public_media_and_only_the_order_side_downloads_them(
    chain, funded_user, trustless_work, settings, tmp_path
):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.PRIVATE_MEDIA_ROOT = str(tmp_path / "private")
    buyer, seller = funded_user("50.00"), funded_user("0")
    listing = ListingFactory(seller=seller, price_cents=3_000)
    ListingMilestoneFactory(listing=listing, position=0, title="Draft", amount_cents=1_000)
    ListingMilestoneFactory(listing=listing, position=1, title="Final", amount_cents=2_000)
    buyer_client, seller_client = logged_in(buyer), logged_in(seller)
    base = buyer_client.post(
        f"/listings/{listing.public_id}/checkout/",
        {"token": checkout_token(buyer_client, listing), "price_cents": 3_000},
    )["Location"]
    order = Order.objects.get()
    pdf = SimpleUploadedFile("draft.pdf", b"%PDF-1.4\n% the private draft\n", content_type="application/pdf")
    seller_client.post(base + "deliver/", {"milestone": "m1", "evidence_text": "The draft", "evidence_file": pdf})
    name = OrderMilestone.objects.get(order=order, ref="m1").evidence_file.name
    assert name

    # Nothing reaches the public media directory, so nothing is served at MEDIA_URL (what the
    # proxy, or `make run`, serves from MEDIA_ROOT).
    assert not [path for path in (tmp_path / "media").rglob("*") if path.is_file()]
    with pytest.raises(Http404):
        static_serve(RequestFactory().get(settings.MEDIA_URL + name), name, document_root=settings.MEDIA_ROOT)
    assert (tmp_path / "private" / name).read_bytes().startswith(b"%PDF-1.4")
    assert settings.MEDIA_URL not in buyer_client.get(base).content.decode()

    evidence = reverse("order-evidence", args=[order.public_id, "m1"])
    for member in (buyer, seller, UserFactory(is_staff=True)):
        download = logged_in(member).get(evidence)
        assert download.status_code == 200, member
        assert b"".join(download.streaming_content) == b"%PDF-1.4\n% the private draft\n"
        assert download["Content-Type"] == "application/pdf"
        assert download["Content-Disposition"].startswith("attachment; filename=")
        assert download["X-Content-Type-Options"] == "nosniff"
        assert "private" in download["Cache-Control"]
    assert logged_in(UserFactory()).get(evidence).status_code == 404
    anonymous = Client().get(evidence)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
