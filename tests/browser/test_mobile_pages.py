"""Every page a member meets, at a phone's width (390 x 844): none scrolls sideways (issue 14).

The pages with their own journeys are also checked there (test_buyer_pages, test_marketplace_pages);
this walks the rest on the demo data, logged out and as the demo seller with an order."""

import pytest

from tests.browser.screenshots import MOBILE, horizontal_overflow
from tests.browser.test_marketplace_pages import demo_seeded, finished_order
from tests.browser.test_order_journey import log_in
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

VISITORS_PAGES = ["/", "/listings/", "/listings/?q=logo", "/accounts/login/", "/accounts/signup/", "/escrow/"]
MEMBERS_PAGES = [
    "/listings/mine/",
    "/listings/new/",
    "/orders/purchases/",
    "/orders/sales/",
    "/wallet/",
    "/accounts/profile/",
    "/accounts/password-reset/",
]


@pytest.fixture
def demo(live_server):
    seller, listing = demo_seeded()
    order = finished_order(buyer=UserFactory(display_name="A buyer with a rather long display name"), listing=listing)
    return live_server.url, seller, listing, order


def _sideways(page, url: str, path: str) -> tuple[str, int]:
    response = page.goto(url + path)
    assert response is not None and response.status == 200, (path, response and response.status)
    page.wait_for_load_state("load")
    return path, horizontal_overflow(page)


def test_no_page_scrolls_sideways_on_a_phone(demo, browser):
    url, seller, listing, order = demo
    context = browser.new_context(viewport=MOBILE)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        pages = [*VISITORS_PAGES, f"/listings/{listing.public_id}/", f"/sellers/{seller.handle}/"]
        measured = [_sideways(page, url, path) for path in pages]
        log_in(page, url, seller)
        pages = [*MEMBERS_PAGES, f"/listings/{listing.public_id}/edit/", f"/orders/{order.public_id}/"]
        measured += [_sideways(page, url, path) for path in pages]
    finally:
        context.close()
    assert [(path, overflow) for path, overflow in measured if overflow > 0] == []
