"""The marketplace's own pages in a real browser, on the demo data (`seed_demo`, pictures drawn
with Pillow): the home page's photo grid, a listing with its gallery, seller card and reviews, a
buyer reviewing a finished order and the seller replying, and the seller's profile. Each page is
also checked at a phone's width (no sideways scrolling) and written to docs/screenshots/."""

import io
import re
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from marketplace.management.commands.seed_demo import DEMO_SELLER
from marketplace.models import Listing, Order, User
from marketplace.reviews import review_create, review_reply
from tests.browser.conftest import policy_violations
from tests.browser.screenshots import DESKTOP, MOBILE, horizontal_overflow, screenshot_save
from tests.browser.test_order_journey import log_in
from tests.factories import TEST_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
USD = 10_000_000
LOGO_KIT = "A logo and brand kit for your small business"
EARLIER_REVIEWS = [
    (
        "Marta Ruiz",
        5,
        "Three strong concepts on day two, and the final files came with a tidy little style guide.",
        True,
    ),
    ("Tom Becker", 4, "Good logo, clear process. One revision round took a day longer than promised.", False),
]


def finished_order(*, buyer: User, listing: Listing, status=Order.Status.CLOSED) -> Order:
    """An order row already paid out (its escrow is not what these pages are about)."""
    return Order.objects.create(
        buyer=buyer,
        seller=listing.seller,
        listing=listing,
        amount=listing.price_cents * USD // 100,
        title=listing.title,
        status=status,
        outcome=Order.Outcome.RELEASED if status == Order.Status.CLOSED else "",
    )


def demo_seeded() -> tuple[User, Listing]:
    """The demo data (seed_demo), its seller logging in with TEST_PASSWORD: (seller, the logo kit)."""
    call_command("seed_demo", stdout=io.StringIO(), stderr=io.StringIO())
    seller = User.objects.get(email=DEMO_SELLER)
    seller.set_password(TEST_PASSWORD)
    seller.save()
    return seller, Listing.objects.get(title=LOGO_KIT)


@pytest.fixture
def demo(live_server):
    seller, listing = demo_seeded()
    for name, rating, body, replied in EARLIER_REVIEWS:
        order = finished_order(buyer=UserFactory(display_name=name), listing=listing)
        review = review_create(order=order, buyer=order.buyer, rating=rating, body=body)
        if replied:
            review_reply(review=review, seller=seller, reply="Thank you, Marta! Good luck with the launch.")
    return SimpleNamespace(url=live_server.url, seller=seller, listing=listing)


def loaded_widths(page, selector: str) -> list[int]:
    """The natural width of each image `selector` finds, once each is scrolled into view and loaded
    (0: the browser could not load or decode it)."""
    images = page.locator(selector)
    assert images.count(), selector
    for n in range(images.count()):
        images.nth(n).scroll_into_view_if_needed()
    page.wait_for_function("s => [...document.querySelectorAll(s)].every(i => i.complete)", arg=selector)
    page.evaluate("window.scrollTo(0, 0)")
    return page.eval_on_selector_all(selector, "images => images.map(i => i.naturalWidth)")


@pytest.fixture
def phone(browser):
    """A page at a phone's width, held to the same security policies as the others."""
    context = browser.new_context(viewport=MOBILE, device_scale_factor=1, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    violations = policy_violations(page)
    yield page
    context.close()
    assert not violations, violations


def test_the_home_page_is_a_grid_of_photo_cards(demo, page, phone):
    page.set_viewport_size(DESKTOP)
    page.goto(demo.url + "/")
    cards = page.get_by_test_id("latest").locator("article")
    expect(cards).to_have_count(8)
    widths = loaded_widths(page, "[data-testid=latest] article img")
    assert len(widths) == 8 and all(width == 800 for width in widths), widths
    assert all(loaded_widths(page, "[data-testid=categories] img")), "a category tile's picture did not load"
    expect(page.get_by_test_id("categories").get_by_role("link", name="Design")).to_have_attribute(
        "href", "/listings/?category=design"
    )
    # The window's worth from the categories down (the whole page makes too large a file).
    page.evaluate("window.scrollTo(0, document.getElementById('find-heading').getBoundingClientRect().top - 24)")
    screenshot_save(page, name="home", full_page=False)
    page.get_by_test_id("categories").get_by_role("link", name="Design").click()
    expect(page.locator("article").filter(has_text=LOGO_KIT).get_by_test_id("card-rating")).to_contain_text("4.5")

    phone.goto(demo.url + "/")
    assert all(loaded_widths(phone, "[data-testid=latest] article img"))
    assert horizontal_overflow(phone) == 0
    phone.evaluate("window.scrollTo(0, document.getElementById('find-heading').getBoundingClientRect().top - 16)")
    screenshot_save(phone, name="home-mobile", full_page=False)
    phone.goto(demo.url + "/listings/")
    expect(phone.get_by_test_id("results").locator("article")).to_have_count(11)
    assert horizontal_overflow(phone) == 0


def test_the_listing_page_has_a_gallery_the_seller_and_reviews(demo, page, phone):
    page.set_viewport_size(DESKTOP)
    page.goto(f"{demo.url}/listings/{demo.listing.public_id}/")
    assert all(loaded_widths(page, ".carousel-item.active img, .gallery-thumbs img"))
    thumbnails = page.locator(".gallery-thumbs button")
    expect(thumbnails).to_have_count(3)
    thumbnails.nth(2).click()
    expect(page.locator(".carousel-item").nth(2)).to_have_class(re.compile(r"\bactive\b"), timeout=5_000)

    card = page.get_by_test_id("seller-card")
    expect(card).to_contain_text("Sam Seller")
    expect(card).to_contain_text("2 completed orders")
    expect(card).to_contain_text("Member since")
    expect(card.get_by_test_id("rating")).to_contain_text("4.5")
    expect(card.locator("img.avatar")).to_be_visible()
    reviews = page.get_by_test_id("reviews").get_by_test_id("review")
    expect(reviews).to_have_count(2)
    expect(reviews.first).to_contain_text("Tom Becker")  # newest first
    expect(page.get_by_test_id("review-reply")).to_contain_text("Good luck with the launch")
    expect(page.get_by_test_id("related").locator("article")).to_have_count(1)  # the other design listing
    screenshot_save(page, name="listing", full_page=False)

    phone.goto(f"{demo.url}/listings/{demo.listing.public_id}/")
    expect(phone.get_by_test_id("seller-card")).to_be_visible()
    assert horizontal_overflow(phone) == 0
    screenshot_save(phone, name="listing-mobile", full_page=False)


def test_the_buyer_reviews_after_release_and_the_seller_replies(demo, people, phone):
    buyer = UserFactory(display_name="Bea Buyer")
    order = finished_order(buyer=buyer, listing=demo.listing, status=Order.Status.RELEASED)
    order_url = f"{demo.url}/orders/{order.public_id}/"

    buyer_page = people("buyer")
    log_in(buyer_page, demo.url, buyer)
    buyer_page.goto(order_url)
    box = buyer_page.get_by_test_id("order-review")
    expect(box).to_contain_text("How did it go?")
    box.locator("label[for=review-rating-4]").click()
    expect(box.locator("#review-rating-4")).to_be_checked()
    box.get_by_label("Your review").fill("Sam listened, sketched fast and delivered every format we needed.")
    box.get_by_role("button", name="Publish the review").click()
    expect(buyer_page.get_by_text("Thank you: your review is published.")).to_be_visible()
    expect(buyer_page.get_by_test_id("order-review")).to_contain_text("Your review")
    expect(buyer_page.get_by_role("button", name="Publish the review")).to_have_count(0)  # once

    seller_page = people("seller")
    log_in(seller_page, demo.url, demo.seller)
    seller_page.goto(order_url)
    box = seller_page.get_by_test_id("order-review")
    expect(box).to_contain_text("Sam listened, sketched fast")
    box.get_by_label("Reply to this review").fill("Thanks Bea, it was a pleasure!")
    box.get_by_role("button", name="Publish the reply").click()
    expect(seller_page.get_by_text("Your reply is published under the review.")).to_be_visible()
    expect(seller_page.get_by_test_id("review-reply")).to_contain_text("Thanks Bea, it was a pleasure!")

    # The seller's profile: about, listings, the three reviews and their average.
    seller_page.set_viewport_size(DESKTOP)
    seller_page.goto(f"{demo.url}/listings/{demo.listing.public_id}/")
    seller_page.get_by_test_id("seller-card").get_by_role("link", name="View profile").click()
    profile = seller_page.get_by_test_id("seller-profile")
    expect(profile).to_contain_text("Sam Seller")
    expect(profile).to_contain_text("Designer and Django developer")
    expect(profile.get_by_test_id("rating")).to_contain_text("4.3")  # (5 + 4 + 4) / 3
    expect(profile.get_by_test_id("rating")).to_contain_text("3 reviews")
    expect(seller_page.get_by_test_id("reviews").get_by_test_id("review")).to_have_count(3)
    expect(seller_page.get_by_test_id("results").locator("article")).to_have_count(4)
    assert all(loaded_widths(seller_page, "[data-testid=results] img"))
    screenshot_save(seller_page, name="seller", full_page=False)

    phone.goto(seller_page.url)
    expect(phone.get_by_test_id("seller-profile")).to_contain_text("Sam Seller")
    assert horizontal_overflow(phone) == 0
    screenshot_save(phone, name="seller-mobile", full_page=False)
