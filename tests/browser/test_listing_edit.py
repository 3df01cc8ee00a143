"""A seller edits a listing with milestones in a real browser: the rows they leave alone stay (issue 9),
and the page's running total and the server agree on the sum."""

from decimal import Decimal

import pytest
from playwright.sync_api import expect

from marketplace.listings import MilestoneSpec, listing_create
from marketplace.models import Listing
from tests.browser.test_order_journey import log_in
from tests.factories import CategoryFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def stored_milestones(listing: Listing) -> list[tuple[str, int]]:
    return list(Listing.objects.get(pk=listing.pk).milestones.values_list("title", "amount_cents"))


def test_editing_a_listing_keeps_the_milestones_left_alone(page, live_server):
    seller = UserFactory(display_name="Sam Seller")
    listing = listing_create(
        seller=seller,
        title="A logo for your shop",
        description="Three concepts, then the chosen one polished.",
        price=Decimal("120.50"),
        category=CategoryFactory(name="Design", slug="design"),
        delivery_days=5,
        delivery_terms="Files as a ZIP link.",
        milestones=[
            MilestoneSpec(title="Concepts", amount=Decimal("40.50")),
            MilestoneSpec(title="Final files", amount=Decimal("80.00")),
        ],
    )
    log_in(page, live_server.url, seller)
    edit = f"{live_server.url}/listings/{listing.public_id}/edit/"

    # Only the delivery terms change.
    page.goto(edit)
    expect(page.locator("#milestone-total")).to_have_text("Milestones add up to $120.50 of $120.50 ✓.")
    page.locator("#id_delivery_terms").fill("A shared folder, two rounds of revisions.")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_text("Your changes are saved.")).to_be_visible()
    expect(page.get_by_text("Paid in 2 milestones")).to_be_visible()
    assert stored_milestones(listing) == [("Concepts", 4050), ("Final files", 8000)]

    # The price and one amount together; the other row is unchanged and still counts.
    page.goto(edit)
    page.locator("#id_price").fill("150.50")
    page.locator("#id_milestones-1-amount").fill("110.00")
    expect(page.locator("#milestone-total")).to_have_text("Milestones add up to $150.50 of $150.50 ✓.")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_text("Your changes are saved.")).to_be_visible()
    assert stored_milestones(listing) == [("Concepts", 4050), ("Final files", 11000)]

    # A sum that does not match is refused, as the page's total already says; what was typed stays.
    page.goto(edit)
    page.locator("#id_price").fill("160.00")
    expect(page.locator("#milestone-total")).to_have_text("Milestones add up to $150.50 of $160.00.")
    page.get_by_role("button", name="Save changes").click()
    expect(
        page.get_by_text("Milestones: the amounts add up to $150.50; they must add up to the price, $160.00.")
    ).to_be_visible()
    expect(page.locator("#id_price")).to_have_value("160.00")
    expect(page.locator("#id_milestones-0-amount")).to_have_value("40.50")
    assert Listing.objects.get(pk=listing.pk).price_cents == 15050

    # Removing a row, with the price following it.
    page.locator("#id_milestones-0-DELETE").check()
    page.locator("#id_price").fill("110.00")
    expect(page.locator("#milestone-total")).to_have_text("Milestones add up to $110.00 of $110.00 ✓.")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_text("Your changes are saved.")).to_be_visible()
    assert stored_milestones(listing) == [("Final files", 11000)]
