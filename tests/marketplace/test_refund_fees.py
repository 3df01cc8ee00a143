"""Fees on refunds (docs/payments.md): the escrow takes its fees from a refund too, and the checkout,
the order page's refund and dispute forms and the refund's confirmation say how much, in dollars,
before anyone pays; the buyer then gets back exactly what they were told."""

from decimal import Decimal as D

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from escrow.services import escrow_fees
from marketplace.models import Order
from offerhub.money import money_dollars
from payments.ledger import user_accounts
from tests.factories import ListingFactory, ListingMilestoneFactory, UserFactory
from tests.marketplace.test_order_pages import USD, checkout_token, credit, logged_in


def told(page: str) -> str:
    """The fee block's text, on one line."""
    start = page.index('data-testid="refund-fees"')
    return " ".join(page[start : page.index("</p>", start)].split())


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("price_cents", "back", "fees", "trustless_work", "platform"),
    [
        (4_000, "37.88", "2.12", "0.12", "2.00"),  # 0.3 % and 5 % of $40
        (1_200, "11.36", "0.64", "0.04", "0.60"),  # $0.036 + $0.60 leave $11.364: the page rounds it down
    ],
)
def test_checkout_says_what_a_refund_would_give_back(settings, price_cents, back, fees, trustless_work, platform):
    settings.OFFERHUB_PLATFORM_FEE_PERCENT = D("5")
    buyer = UserFactory()
    credit(buyer, 100)
    listing = ListingFactory(price_cents=price_cents)
    page = logged_in(buyer).get(f"/listings/{listing.public_id}/checkout/").content.decode()
    price = D(price_cents) / 100
    assert "You pay the price, nothing more." not in page  # no longer unqualified
    assert "When the seller is paid, you pay the price, nothing more" in page
    text = told(page)
    assert f"you would get back <strong>${back}</strong> of ${price:.2f}" in text
    breakdown = f"(${fees}: Trustless Work 0.3 %, ${trustless_work}; OfferHub 5 %, ${platform})"
    assert f"The fees {breakdown} are not returned" in text
    assert D(back) + D(fees) == price and D(trustless_work) + D(platform) == D(fees)
    # The figure is what the escrow's payout would leave, to the cent shown.
    assert money_dollars(escrow_fees(amount=price_cents * 100_000, platform_fee_percent=D("5")).net) == D(back)


def place(buyer_client, listing) -> str:
    return buyer_client.post(
        f"/listings/{listing.public_id}/checkout/",
        {"token": checkout_token(buyer_client, listing), "price_cents": listing.price_cents},
    )["Location"]


@pytest.mark.django_db(transaction=True)
def test_the_order_page_and_the_refund_confirmation_say_it_and_the_buyer_gets_exactly_that(
    chain, funded_user, trustless_work
):
    buyer, seller = funded_user("50.00"), funded_user("0")
    buyer_client, seller_client = logged_in(buyer), logged_in(seller)
    order_page = place(buyer_client, ListingFactory(seller=seller, price_cents=4_000))

    seller_text = told(seller_client.get(order_page).content.decode())
    assert "a full refund gives the buyer back <strong>$37.88</strong> of the $40.00 in escrow" in seller_text
    assert "($2.12: Trustless Work 0.3 %, $0.12; OfferHub 5 %, $2.00) are not returned" in seller_text
    buyer_page = buyer_client.get(order_page).content.decode()
    assert "Open a dispute" in buyer_page  # the block stands next to the buyer's dispute form
    assert "a full refund gives you back <strong>$37.88</strong> of the $40.00 in escrow" in told(buyer_page)
    assert "each side's share pays its part of the fees" in told(buyer_page)

    confirm = seller_client.post(order_page + "refund/", {"reason": "Cannot take it on"}).content.decode()
    assert "$37.88 goes back to " in confirm and "$2.12" in confirm  # the confirmation says the same first
    assert Order.objects.get().status == Order.Status.IN_PROGRESS
    response = seller_client.post(
        order_page + "refund/", {"reason": "Cannot take it on", "confirmed": "yes"}, follow=True
    )
    assert "Refund started: $37.88 of $40.00 goes back to the buyer; the escrow keeps $2.12 in fees" in (
        response.content.decode()
    )
    order = Order.objects.get()
    assert (order.status, order.outcome) == (Order.Status.CLOSED, Order.Outcome.REFUNDED)
    available, held = user_accounts(buyer)
    assert (money_dollars(available.balance), held.balance) == (D("10.00") + D("37.88"), 0)
    assert 'data-testid="refund-fees"' not in seller_client.get(order_page).content.decode()  # nothing left to refund


@pytest.mark.django_db(transaction=True)
def test_after_a_milestone_is_paid_the_page_counts_the_fees_on_what_the_escrow_still_holds(
    chain, funded_user, trustless_work
):
    buyer, seller = funded_user("50.00"), funded_user("0")
    listing = ListingFactory(seller=seller, price_cents=3_000)
    ListingMilestoneFactory(listing=listing, position=0, title="Draft", amount_cents=1_000)
    ListingMilestoneFactory(listing=listing, position=1, title="Final", amount_cents=2_000)
    buyer_client, seller_client = logged_in(buyer), logged_in(seller)
    order_page = place(buyer_client, listing)
    pdf = SimpleUploadedFile("draft.pdf", b"%PDF-1.4\n% a draft\n", content_type="application/pdf")
    seller_client.post(order_page + "deliver/", {"milestone": "m1", "evidence_text": "Draft", "evidence_file": pdf})
    buyer_client.post(order_page + "release/", {"milestone": "m1"})

    text = told(seller_client.get(order_page).content.decode())
    # $20 left in escrow: 0.3 % is $0.06, 5 % is $1.00.
    assert "gives the buyer back <strong>$18.94</strong> of the $20.00 in escrow" in text
    assert "($1.06: Trustless Work 0.3 %, $0.06; OfferHub 5 %, $1.00)" in text
    seller_client.post(order_page + "refund/", {"reason": "Cannot finish", "confirmed": "yes"})
    available, _ = user_accounts(buyer)
    assert available.balance == 20 * USD + escrow_fees(amount=20 * USD, platform_fee_percent=D("5")).net
    assert money_dollars(available.balance) == D("20.00") + D("18.94")
