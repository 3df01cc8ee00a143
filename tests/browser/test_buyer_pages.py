"""The buyer's and seller's pages as a new member meets them, on a laptop and on a phone (issue 14):
My purchases as cards without sideways scrolling at 390 px, the checkout → add funds → checkout
round trip, a delivery whose refused file keeps what the seller typed (the error by the field),
and the confirmation before a release that names the amount and who receives it.

Tasks run eagerly here (each step of an order ends with the request that started it). As they
pass, the tests write the screenshots of docs/screenshots/ (README.md, "Screenshots").
"""

import pytest
from playwright.sync_api import expect

from marketplace.models import Order
from payments.wallets import platform_bootstrap, wallet_ensure
from tests.browser.conftest import policy_violations
from tests.browser.screenshots import DESKTOP, MOBILE, horizontal_overflow, screenshot_save
from tests.browser.test_order_journey import log_in, off_the_browser_thread
from tests.factories import CategoryFactory, ListingFactory, ListingMilestoneFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
USD = 10_000_000
LONG_TITLE = "A complete brand identity: logo, colour palette, typography and a one-page style guide"


@pytest.fixture
def window(browser):
    """A browser window of its own (own cookies) at a given size; no page may break the policies."""
    contexts, violations = [], []

    def open_window(viewport: dict):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        page.set_default_timeout(15_000)
        violations.append(policy_violations(page))
        contexts.append(context)
        return page

    yield open_window
    for context in contexts:
        context.close()
    refused = [text for found in violations for text in found]
    assert not refused, "refused by the pages' security policies:\n" + "\n".join(refused)


def members():
    """A seller with a $40 listing, a buyer with an empty wallet and a few past purchases."""
    from django.db import connection

    platform_bootstrap()
    design = CategoryFactory(name="Design", slug="design")
    seller, buyer = UserFactory(display_name="Sam Seller"), UserFactory(display_name="Bea Buyer")
    for user in (seller, buyer):
        wallet_ensure(user=user)
    listing = ListingFactory(seller=seller, category=design, title="A logo for your shop", price_cents=4_000)
    other = ListingFactory(seller=seller, category=design, title="Business cards", price_cents=2_500)
    ListingMilestoneFactory(listing=other, position=0, title="Two designs to choose from", amount_cents=1_000)
    ListingMilestoneFactory(listing=other, position=1, title="Print-ready files", amount_cents=1_500)
    for title, status, outcome in (
        (LONG_TITLE, Order.Status.CLOSED, Order.Outcome.RELEASED),
        ("Flyer for the summer sale", Order.Status.CLOSED, Order.Outcome.CANCELED),
    ):
        Order.objects.create(
            buyer=buyer, seller=seller, amount=1_250 * USD, title=title, status=status, outcome=outcome
        )
    connection.close()
    return seller, buyer, listing, other


def test_checkout_add_funds_deliver_with_a_refused_file_confirm_the_release_and_the_phone_pages(
    asgi_server, window, tmp_path
):
    url = asgi_server
    seller, buyer, listing, other = off_the_browser_thread(members)

    # The buyer finds the checkout short of money: "Add funds" goes to the wallet and back.
    buyer_page = window(DESKTOP)
    log_in(buyer_page, url, buyer)
    buyer_page.goto(f"{url}/listings/{listing.public_id}/")
    buyer_page.get_by_test_id("buy").click()
    checkout_url = buyer_page.url
    expect(buyer_page.get_by_test_id("checkout-available")).to_have_text("$0.00")
    expect(buyer_page.get_by_test_id("confirm")).to_be_disabled()
    screenshot_save(buyer_page, name="checkout")
    buyer_page.get_by_test_id("add-funds").click()
    expect(buyer_page.get_by_test_id("funds-for-checkout")).to_be_visible()
    screenshot_save(buyer_page, name="wallet", full_page=False)
    buyer_page.locator("#simulate-amount").fill("100.00")
    buyer_page.get_by_role("button", name="Simulate a deposit").click()
    assert buyer_page.url == checkout_url  # the same checkout, with the new balance
    expect(buyer_page.get_by_text("Simulated a deposit of $100.00.")).to_be_visible()
    expect(buyer_page.get_by_test_id("checkout-available")).to_have_text("$100.00")
    buyer_page.get_by_test_id("confirm").click()
    expect(buyer_page.get_by_text("Order placed.")).to_be_visible()
    expect(buyer_page.get_by_test_id("order-status")).to_have_text("In progress")
    reference = buyer_page.get_by_test_id("order-ref").inner_text()
    assert reference.startswith("#") and "ord_" not in buyer_page.locator("main").inner_text()
    order_url = buyer_page.url

    # The seller delivers; a refused file keeps the note they typed and says why by the file field.
    seller_page = window(DESKTOP)
    log_in(seller_page, url, seller)
    seller_page.get_by_role("link", name="My sales").click()
    seller_page.get_by_role("link", name="A logo for your shop").click()
    seller_page.get_by_label("What did you deliver?").fill("Three concepts attached, as promised.")
    seller_page.get_by_label("File of the work").set_input_files(
        files=[{"name": "concepts.exe", "mimeType": "application/octet-stream", "buffer": b"MZ\x90\x00"}]
    )
    seller_page.get_by_role("button", name="Mark as delivered").click()
    expect(seller_page.get_by_label("What did you deliver?")).to_have_value("Three concepts attached, as promised.")
    file_field = seller_page.get_by_label("File of the work")
    expect(file_field).to_have_attribute("aria-invalid", "true")
    error = seller_page.locator("#deliver-evidence_file_error")
    expect(error).to_contain_text("“concepts.exe” is not a file type we accept")
    assert error.evaluate("(e) => e.previousElementSibling.id") == "deliver-evidence_file"  # right by the field
    expect(seller_page.locator(".messages .alert-danger")).to_have_count(0)  # not at the top of the page
    pdf = tmp_path / "concepts.pdf"
    pdf.write_bytes(b"%PDF-1.4\n% three concepts\n")
    seller_page.get_by_label("File of the work").set_input_files(str(pdf))
    seller_page.get_by_role("button", name="Mark as delivered").click()
    expect(seller_page.get_by_text("Marked delivered.")).to_be_visible()

    # The buyer approves, after a confirmation that names the amount and who receives it.
    buyer_page.goto(order_url)
    expect(buyer_page.get_by_test_id("evidence")).to_contain_text("Three concepts attached")
    expect(buyer_page.get_by_test_id("delivery-file")).to_be_visible()
    screenshot_save(buyer_page, name="order", full_page=False)
    buyer_page.get_by_test_id("approve").click()
    summary = buyer_page.get_by_test_id("confirm-summary")
    expect(summary).to_have_text("$40.00 goes from the escrow to Sam Seller.")
    expect(buyer_page.get_by_test_id("confirm-yes")).to_have_text("Yes, release $40.00 to Sam Seller")
    assert off_the_browser_thread(lambda: Order.objects.get(title="A logo for your shop").status) == "IN_PROGRESS"
    buyer_page.get_by_test_id("confirm-yes").click()
    expect(buyer_page.get_by_text("the payment is on its way to the seller")).to_be_visible()
    expect(buyer_page.get_by_test_id("order-status")).to_have_text("Closed · seller paid")

    buyer_page.get_by_role("navigation", name="Main navigation").get_by_role("link", name="My purchases").click()
    expect(buyer_page.get_by_test_id("order-row")).to_have_count(3)
    screenshot_save(buyer_page, name="purchases")

    # On a phone: every page fits the screen; My purchases is a list of cards.
    phone = window(MOBILE)
    log_in(phone, url, buyer)
    phone.goto(f"{url}/orders/purchases/")
    rows = phone.get_by_test_id("order-row")
    expect(rows).to_have_count(3)
    assert rows.first.evaluate("(row) => getComputedStyle(row).display") == "block"  # a card, not a table row
    long_row = rows.filter(has_text="A complete brand identity")
    title_box = long_row.get_by_role("link").bounding_box()
    assert title_box["width"] > 200  # the title is not squeezed to a letter per line
    box = long_row.get_by_test_id("order-amount").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= MOBILE["width"]  # the amount is not cut off
    label = long_row.get_by_test_id("order-amount").evaluate("(cell) => getComputedStyle(cell, '::before').content")
    assert label == '"Amount"'  # each value of the card says what it is
    assert horizontal_overflow(phone) == 0
    screenshot_save(phone, name="purchases-mobile")

    phone.goto(order_url)
    expect(phone.get_by_test_id("order-status")).to_have_text("Closed · seller paid")
    assert horizontal_overflow(phone) == 0
    screenshot_save(phone, name="order-mobile", full_page=False)

    phone.goto(f"{url}/listings/{other.public_id}/checkout/")
    expect(phone.get_by_test_id("checkout-available")).to_have_text("$60.00")
    assert horizontal_overflow(phone) == 0
    screenshot_save(phone, name="checkout-mobile")

    phone.goto(f"{url}/wallet/")
    expect(phone.get_by_test_id("available")).to_have_text("$60.00")
    assert horizontal_overflow(phone) == 0
    screenshot_save(phone, name="wallet-mobile", full_page=False)

    phone.goto(f"{url}/orders/sales/")
    assert horizontal_overflow(phone) == 0

    # An order in milestones: each milestone's number stays on its title's line.
    phone.goto(f"{url}/listings/{other.public_id}/checkout/")
    phone.get_by_test_id("confirm").click()
    expect(phone.get_by_test_id("order-status")).to_have_text("In progress")
    milestones = phone.get_by_test_id("milestone")
    expect(milestones).to_have_count(2)
    for row in (milestones.first, milestones.last):
        number = row.evaluate("(li) => getComputedStyle(li, '::before').content")
        assert number.startswith("counters(") or number[1].isdigit()  # "1. ", "2. "
        row_box, title_box = row.bounding_box(), row.locator(".fw-semibold").bounding_box()
        assert title_box["y"] - row_box["y"] < 20  # the title starts on the first line, beside its number
    assert horizontal_overflow(phone) == 0

    # The milestones are approved one by one, each after a confirmation of its own that names what
    # moves; the last one releases what is left in the escrow, not the order's whole price.
    milestone_order = phone.url
    seller_page.goto(milestone_order)
    seller_page.get_by_test_id("deliver-form").filter(has_text="Two designs to choose from").get_by_label(
        "What did you deliver?"
    ).fill("Two designs, as promised.")
    seller_page.get_by_role("button", name="Mark “Two designs to choose from” delivered").click()
    expect(seller_page.get_by_text("“Two designs to choose from” marked delivered.")).to_be_visible()
    phone.goto(milestone_order)
    phone.get_by_test_id("approve-milestone").click()
    expect(phone.get_by_test_id("confirm-summary")).to_have_text("$10.00 goes from the escrow to Sam Seller.")
    assert horizontal_overflow(phone) == 0
    phone.get_by_test_id("confirm-yes").click()
    expect(phone.get_by_text("Approved “Two designs to choose from”: $10.00 is on its way")).to_be_visible()

    seller_page.goto(milestone_order)
    seller_page.get_by_label("What did you deliver?").fill("The print-ready files.")
    seller_page.get_by_role("button", name="Mark “Print-ready files” delivered").click()
    expect(seller_page.get_by_text("“Print-ready files” marked delivered.")).to_be_visible()
    phone.goto(milestone_order)
    phone.get_by_test_id("approve").click()
    expect(phone.get_by_test_id("confirm-summary")).to_have_text("$15.00 goes from the escrow to Sam Seller.")
    expect(phone.get_by_test_id("confirm-yes")).to_have_text("Yes, release $15.00 to Sam Seller")
    phone.get_by_test_id("confirm-yes").click()
    expect(phone.get_by_test_id("order-status")).to_have_text("Closed · seller paid")
