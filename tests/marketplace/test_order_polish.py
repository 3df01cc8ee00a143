"""Issue 14's rough edges on the order and wallet pages: short order references, confirmations
before what cannot be undone, a delivery file for an order without milestones, forms that keep
what was typed, and the way back to the checkout after adding funds."""

from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction

from escrow.models import Escrow
from escrow.services import escrow_fees
from marketplace.models import Order, OrderMilestone
from marketplace.references import order_pk_from_reference, order_reference
from offerhub.models import Event
from offerhub.money import money_dollars
from offerhub.services import event_publish
from payments.ledger import user_accounts
from payments.views import safe_next
from tests.factories import ListingFactory, UserFactory
from tests.marketplace.test_order_pages import (
    USD,
    an_order,
    checkout_token,
    logged_in,
    milestone_order_bought,
    order_bought,
)

S = Order.Status


# --- Short references ----------------------------------------------------------------------------


def test_references_are_short_unique_and_resolve_back_however_they_are_typed():
    seen = {}
    for pk in [*range(1, 5_000), 32**5 - 1, 32**5, 32**6 + 7, 10**10]:
        reference = order_reference(pk)
        assert reference not in seen, (pk, seen.get(reference))
        seen[reference] = pk
        assert order_pk_from_reference(reference) == pk
    assert order_reference(1) == "#7NJW-CG" and len(order_reference(32**5 - 1)) == 8  # "#" + 4 + "-" + 2
    typed = order_reference(42)[1:].replace("-", "").lower().replace("0", "o").replace("1", "l")
    assert order_pk_from_reference(typed) == 42  # no "#", no dash, lower case, O for 0 and L for 1
    consecutive = [order_reference(pk) for pk in (100, 101, 102)]
    assert len({r[:5] for r in consecutive}) == 3  # consecutive orders do not look consecutive


def test_a_mistyped_reference_is_refused_by_its_check_character():
    reference = order_reference(1234)
    body = reference[1:].replace("-", "")
    for position in range(len(body)):
        for replacement in "0123456789ABCDEFGHJKMNPQRSTVWXYZ":
            if replacement == body[position]:
                continue
            mistyped = body[:position] + replacement + body[position + 1 :]
            assert order_pk_from_reference(mistyped) is None, mistyped
    for nonsense in ("", "#", "ord_123", "#ABCD", "#ABCD-U1", "hello world", "#ABCD-EFGHIJKLMNOPQRSTUVWXYZ" * 3):
        assert order_pk_from_reference(nonsense) is None


@pytest.mark.django_db
def test_people_see_the_short_reference_and_can_type_it_into_the_address():
    order = an_order(S.IN_PROGRESS)
    reference = order_reference(order.pk)
    page = logged_in(order.buyer).get(f"/orders/{order.public_id}/").content.decode()
    assert (
        f'data-testid="order-ref">{reference}<' in page
        and order.public_id not in page.split("<main")[1].split("data-fragment-url")[0]
    )
    assert reference in logged_in(order.seller).get("/orders/sales/").content.decode()
    typed = reference[1:].lower()
    response = logged_in(order.seller).get(f"/orders/{typed}/")
    assert response.status_code == 302 and response["Location"] == f"/orders/{order.public_id}/"
    assert logged_in(UserFactory()).get(f"/orders/{typed}/").status_code == 404  # nobody else's
    assert logged_in(order.buyer).get("/orders/ABCD-EF/").status_code == 404


@pytest.mark.django_db
def test_support_finds_an_order_by_its_reference_in_the_backoffice(admin_client):
    order, other = an_order(S.IN_PROGRESS, title="Logo design"), an_order(S.IN_PROGRESS, title="Flyer")
    page = admin_client.get("/admin/marketplace/order/", {"q": order_reference(order.pk)}).content.decode()
    assert order.public_id in page and other.public_id not in page
    page = admin_client.get("/admin/marketplace/order/", {"q": "Flyer"}).content.decode()
    assert other.public_id in page and order.public_id not in page  # the usual search still works


@pytest.mark.django_db(transaction=True)
def test_order_emails_carry_the_reference_and_the_full_link():
    buyer, seller = UserFactory(email="buyer@example.test"), UserFactory(email="seller@example.test")
    order = Order.objects.create(buyer=buyer, seller=seller, amount=25 * USD, title="Logo")
    with transaction.atomic():
        event_publish(type="order.released", aggregate_type="Order", aggregate_id=order.public_id, payload={})
    (message,) = mail.outbox
    assert f"Order {order_reference(order.pk)}: " in message.body and f"/orders/{order.public_id}/" in message.body


# --- Confirmations ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_release_is_confirmed_on_a_page_naming_the_amount_and_the_seller(chain, funded_user, trustless_work):
    buyer, seller = funded_user("50.00"), funded_user("0")
    seller.display_name = "Sam Seller"
    seller.save(update_fields=["display_name"])
    listing = ListingFactory(seller=seller, price_cents=3_000)
    buyer_client, seller_client = logged_in(buyer), logged_in(seller)
    base = buyer_client.post(
        f"/listings/{listing.public_id}/checkout/",
        {"token": checkout_token(buyer_client, listing), "price_cents": 3_000},
    )["Location"]
    assert buyer_client.get(base + "release/").status_code == 302  # nothing to release before the delivery

    seller_client.post(base + "deliver/", {"evidence_text": "Done"})
    page = buyer_client.get(base).content.decode()
    assert f'href="{base}release/" data-testid="approve"' in page  # a link to the confirmation, not a POST
    confirm = buyer_client.get(base + "release/").content.decode()
    assert "$30.00 goes from the escrow to Sam Seller." in confirm
    assert "Yes, release $30.00 to Sam Seller" in confirm and f'action="{base}release/"' in confirm
    assert 'name="csrfmiddlewaretoken"' in confirm
    order = Order.objects.get()
    assert order.status == S.IN_PROGRESS  # showing the question moved nothing
    assert seller_client.get(base + "release/").status_code == 403  # only the buyer releases

    buyer_client.post(base + "release/")
    assert Order.objects.get().status == S.CLOSED
    assert user_accounts(seller)[0].balance > 0


@pytest.mark.django_db(transaction=True)
def test_milestones_are_released_through_their_confirmation_pages(chain, funded_user, trustless_work, settings):
    buyer, seller = funded_user("50.00"), funded_user("0")
    seller.display_name = "Sam Seller"
    seller.save(update_fields=["display_name"])
    buyer_client, seller_client, base = milestone_order_bought(buyer, seller)
    order = Order.objects.get()
    escrow = Escrow.objects.get(engagement_id=order.public_id)
    settings.OFFERHUB_PLATFORM_FEE_PERCENT = escrow.platform_fee_percent + 3  # the operator changes the fee now

    def net(dollars):  # at the fee the escrow was created with
        return escrow_fees(amount=dollars * USD, platform_fee_percent=escrow.platform_fee_percent).net

    assert f"you receive ${money_dollars(net(30)):,.2f} after fees" in seller_client.get(base).content.decode()
    seller_client.post(base + "deliver/", {"milestone": "m1", "evidence_text": "The draft"})
    page = buyer_client.get(base).content.decode()
    assert f'href="{base}release/?milestone=m1" data-testid="approve-milestone"' in page

    confirm = buyer_client.get(base + "release/", {"milestone": "m1"})
    assert confirm.status_code == 200
    confirm = confirm.content.decode()
    assert (
        "Approve “Draft” and release its payment?" in confirm
        and "$10.00 goes from the escrow to Sam Seller." in confirm
    )
    assert 'name="milestone" value="m1"' in confirm
    assert f"${money_dollars(net(10)):,.2f} after the escrow and platform fees" in confirm
    assert OrderMilestone.objects.get(order=order, ref="m1").status == OrderMilestone.Status.COMPLETED
    buyer_client.post(base + "release/", {"milestone": "m1"})
    assert OrderMilestone.objects.get(order=order, ref="m1").status == OrderMilestone.Status.RELEASED
    response = buyer_client.get(base + "release/", {"milestone": "m1"}, follow=True)  # paid already
    assert "“Draft” cannot be approved now." in response.content.decode()

    seller_client.post(base + "deliver/", {"milestone": "m2", "evidence_text": "The final files"})
    assert f'href="{base}release/" data-testid="approve"' in buyer_client.get(base).content.decode()
    confirm = buyer_client.get(base + "release/")
    assert confirm.status_code == 200
    confirm = confirm.content.decode()
    assert "Approve the delivery and release the payment?" in confirm
    # What is left in the escrow, not the order's $30: the draft's $10 is paid already.
    assert "$20.00 goes from the escrow to Sam Seller." in confirm and "Yes, release $20.00 to Sam Seller" in confirm
    assert f"${money_dollars(net(20)):,.2f} after the escrow and platform fees" in confirm
    buyer_client.post(base + "release/")
    assert Order.objects.get().status == S.CLOSED
    assert user_accounts(seller)[0].balance == net(10) + net(20)
    # My sales, the release event and the seller's e-mail: at the escrow's fee too, not today's.
    sales = seller_client.get("/orders/sales/").content.decode()
    assert f"${money_dollars(net(30)):,.2f}" in sales
    released = Event.objects.get(type="order.released", aggregate_id=order.public_id)
    assert released.payload["netAmount"] == str(money_dollars(net(30)))
    (paid,) = [message for message in mail.outbox if message.subject.startswith("You've been paid")]
    assert f"${money_dollars(net(30))} for" in paid.body


@pytest.mark.django_db
def test_cancel_is_confirmed_on_a_page_and_only_a_post_cancels():
    order = an_order(S.FUNDS_RESERVED)
    client = logged_in(order.buyer)
    page = client.get(f"/orders/{order.public_id}/").content.decode()
    assert f'href="/orders/{order.public_id}/cancel/" data-testid="cancel"' in page
    confirm = client.get(f"/orders/{order.public_id}/cancel/").content.decode()
    assert "Cancel this order?" in confirm and "The $30.00 on hold goes back to your available balance" in confirm
    assert Order.objects.get(pk=order.pk).status == S.FUNDS_RESERVED
    response = client.post(f"/orders/{order.public_id}/cancel/", follow=True)
    assert "the hold on the buyer's balance is released" in response.content.decode()

    # Nothing is on hold yet: the page does not say money goes back.
    fresh = an_order(S.ORDER_CREATED)
    for member, words in ((fresh.buyer, "from your balance"), (fresh.seller, "for this order")):
        confirm = logged_in(member).get(f"/orders/{fresh.public_id}/cancel/").content.decode()
        assert "on hold goes back" not in confirm and "$30.00" not in confirm
        assert (
            f"Nothing is on hold {words} yet: no money moves" in confirm and "Nothing (nothing is on hold)" in confirm
        )
    response = logged_in(fresh.buyer).post(f"/orders/{fresh.public_id}/cancel/", follow=True)
    assert "Order canceled. Nothing was paid; nothing was on hold." in response.content.decode()
    assert Order.objects.get(pk=fresh.pk).status == S.CLOSED

    closed = an_order(S.CLOSED, outcome=Order.Outcome.RELEASED)
    response = logged_in(closed.buyer).get(f"/orders/{closed.public_id}/cancel/", follow=True)
    assert "This order cannot be canceled now." in response.content.decode()


# --- Delivery forms --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_rejected_file_keeps_the_typed_evidence_and_shows_the_error_by_the_field():
    order = an_order(S.IN_PROGRESS)
    exe = SimpleUploadedFile("work.exe", b"MZ\x90\x00", content_type="application/octet-stream")
    response = logged_in(order.seller).post(
        f"/orders/{order.public_id}/deliver/",
        {"evidence_text": "Three concepts, as promised.", "evidence_link": "https://x.example/l", "evidence_file": exe},
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert ">\nThree concepts, as promised.</textarea>" in page and 'value="https://x.example/l"' in page
    field = page.index('id="deliver-evidence_file"')
    error = page.index('id="deliver-evidence_file_error"')
    assert 0 < error - field < 400 and "“work.exe” is not a file type we accept" in page[error : error + 200]
    assert 'aria-invalid="true"' in page[page.rindex("<input", 0, field) : field]
    assert 'class="alert alert-danger' not in page.split('data-testid="deliver-form"')[0]  # not at the top
    assert Order.objects.get(pk=order.pk).delivered_at is None


@pytest.mark.django_db(transaction=True)
def test_an_order_without_milestones_is_delivered_with_a_private_file(chain, funded_user, trustless_work):
    buyer, seller = funded_user("50.00"), funded_user("0")
    buyer_client, seller_client, base = order_bought(buyer, seller)
    pdf = SimpleUploadedFile("logo.pdf", b"%PDF-1.4\n% the logo\n", content_type="application/pdf")
    response = seller_client.post(base + "deliver/", {"evidence_text": "The logo", "evidence_file": pdf})
    assert response.status_code == 302
    order = Order.objects.get()
    assert order.delivered_at is not None
    download_url = f"{base}delivery/file/"
    assert download_url in buyer_client.get(base).content.decode()
    download = buyer_client.get(download_url)
    assert download.status_code == 200 and b"".join(download.streaming_content).startswith(b"%PDF")
    assert download["Cache-Control"] == "private, no-store"
    assert seller_client.get(download_url).status_code == 200
    assert logged_in(UserFactory()).get(download_url).status_code == 404
    private = list(Path(django_settings.PRIVATE_MEDIA_ROOT).glob(f"orders/{order.public_id}/delivery/*.pdf"))
    assert len(private) == 1
    assert not list(Path(django_settings.MEDIA_ROOT).glob(f"orders/{order.public_id}/**/*.pdf"))


@pytest.mark.django_db
@pytest.mark.parametrize("milestones", [0, 1])
def test_a_refused_delivery_leaves_no_private_file_behind(milestones, settings, tmp_path):
    settings.PRIVATE_MEDIA_ROOT = str(tmp_path / "private")
    order = an_order(S.IN_PROGRESS, milestones=milestones)
    Escrow.objects.create(  # not funded yet: the contract refuses the delivery's mark
        engagement_id=order.public_id,
        type=Escrow.Type.MULTI if milestones else Escrow.Type.SINGLE,
        title=order.title,
        buyer=order.buyer,
        seller=order.seller,
        hold_reference=order.public_id,
        amount=order.amount,
    )
    pdf = SimpleUploadedFile("work.pdf", b"%PDF-1.4\n% the work\n", content_type="application/pdf")
    response = logged_in(order.seller).post(
        f"/orders/{order.public_id}/deliver/",
        {"milestone": "m1" if milestones else "", "evidence_text": "Done", "evidence_file": pdf},
        follow=True,
    )
    assert "That did not work" in response.content.decode()
    assert Order.objects.get(pk=order.pk).delivered_at is None
    assert not [path for path in (tmp_path / "private").rglob("*") if path.is_file()]


# --- The way back to the checkout --------------------------------------------------------------------


def test_only_local_paths_are_followed_back():
    assert safe_next("/listings/lst_1/checkout/") == "/listings/lst_1/checkout/"
    for outside in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", "x/y", ""):
        assert safe_next(outside) == "", outside
    assert safe_next(None) == ""


@pytest.mark.django_db(transaction=True)
def test_a_deposit_added_from_the_checkout_goes_back_to_it(chain, funded_user):
    buyer = funded_user("0")
    listing = ListingFactory(price_cents=4_000)
    client = logged_in(buyer)
    checkout = f"/listings/{listing.public_id}/checkout/"
    wallet = client.get("/wallet/", {"next": checkout}).content.decode()
    assert 'data-testid="funds-for-checkout"' in wallet and f'name="next" value="{checkout}"' in wallet
    response = client.post("/wallet/simulate-deposit/", {"amount": "50.00", "next": checkout})
    assert response.status_code == 302 and response["Location"] == checkout
    assert 'data-testid="checkout-available">$50.00' in client.get(checkout).content.decode()
    response = client.post("/wallet/simulate-deposit/", {"amount": "5.00", "next": "https://evil.example/"})
    assert response["Location"] == "/wallet/"
    assert 'data-testid="funds-for-checkout"' not in client.get("/wallet/", {"next": "//evil.example"}).content.decode()
