"""A dispute from start to payout, in a real browser: the buyer opens it with a picture, the
seller answers in the thread (the buyer's open page shows the answer without a reload), a
support agent (staff, not a superuser) assigns it to themselves in the backoffice and resolves
it with a split; both parties' open order pages show the outcome by themselves, their wallets
show what they received, and the ledger equals the chain.

Escrow steps run in the background (a Celery worker thread) and the server is the ASGI
application, as in test_order_journey. With OFFERHUB_SCREENSHOTS=1 the test also refreshes the
screenshots of docs/disputes.md (docs/img/disputes/); otherwise it leaves the docs alone.
"""

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import connection
from playwright.sync_api import expect

from backoffice.roles import SUPPORT_AGENT
from disputes.models import Dispute
from escrow.client import TrustlessWorkClient
from escrow.models import Escrow
from escrow.services import escrow_fees
from offerhub.money import money_dollars
from payments.deposits import deposits_sync
from payments.wallets import platform_bootstrap, wallet_ensure
from tests.browser.test_order_journey import (
    LIVE,
    background_tasks,
    log_in,
    off_the_browser_thread,
)
from tests.escrow.test_lifecycle import ledger_equals_chain
from tests.factories import TEST_PASSWORD, CategoryFactory, ListingFactory, UserFactory
from tests.marketplace.test_dispute_case_pages import png_bytes
from tests.payments.conftest import Chain

pytestmark = pytest.mark.django_db(transaction=True)
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "img" / "disputes"
VIEWPORT = {"width": 1366, "height": 900}
THUMBNAIL = 96  # pixels: the picture the buyer uploads
USD = 10_000_000
SELLER_ANSWER = "I can send sharper files today: the colours are as agreed."


def screenshot(target, name: str) -> None:
    """A picture for docs/disputes.md (a page or one element of it), only when asked for."""
    if os.environ.get("OFFERHUB_SCREENSHOTS") != "1":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


@pytest.fixture
def viewport() -> dict:
    """A laptop's screen: the size the screenshots in docs/disputes.md are taken at."""
    return VIEWPORT


def the_cast():
    """A seller with a listing, a buyer with $100 on their wallet, and a support agent who is
    staff in the `Support agent` group, not a superuser."""
    platform_bootstrap()
    seller = UserFactory(display_name="Sam Seller", email="sam@example.test")
    buyer = UserFactory(display_name="Bea Buyer", email="bea@example.test")
    for user in (seller, buyer):
        wallet_ensure(user=user)  # activated at once: tasks are still eager here
    chain = Chain(url=settings.STELLAR_HORIZON_URL, passphrase=settings.STELLAR_NETWORK_PASSPHRASE)
    buyer.refresh_from_db()
    chain.mint(buyer.wallet.public_key, "100.00")
    deposits_sync()
    listing = ListingFactory(
        seller=seller, category=CategoryFactory(name="Design", slug="design"), title="A logo", price_cents=4_000
    )
    agent = UserFactory(display_name="Ana Agent", email="ana@support.example", is_staff=True)
    agent.groups.add(Group.objects.get(name=SUPPORT_AGENT))
    assert not agent.is_superuser
    connection.close()
    return seller, buyer, agent, listing.public_id


def thumbnail_shown(page) -> None:
    """The picture's thumbnail is on the page, loaded through the access-checked file view."""
    page.get_by_test_id("evidence-thumbnail").scroll_into_view_if_needed()
    page.wait_for_function(
        "() => { const img = document.querySelector('[data-testid=evidence-thumbnail]');"
        f" return img && img.complete && img.naturalWidth === {THUMBNAIL}; }}"
    )


def admin_log_in(page, url, user):
    page.goto(url + "/admin/login/?next=/admin/disputes/dispute/")
    page.locator("#id_username").fill(user.email)
    page.locator("#id_password").fill(TEST_PASSWORD)
    page.locator("#login-form [type=submit]").click()


def test_open_with_a_picture_answer_assign_resolve_with_a_split_and_get_paid(asgi_server, people):
    url = asgi_server
    seller, buyer, agent, listing_id = off_the_browser_thread(the_cast)

    with background_tasks():
        # The buyer buys the listing; the payment is secured in the background.
        buyer_page = people("buyer")
        log_in(buyer_page, url, buyer)
        buyer_page.goto(f"{url}/listings/{listing_id}/")
        buyer_page.get_by_test_id("buy").click()
        buyer_page.get_by_test_id("confirm").click()
        expect(buyer_page.get_by_test_id("order-status")).to_have_text("In progress", timeout=LIVE)
        order_url = buyer_page.url

        # The buyer opens a dispute, with a picture of what went wrong.
        buyer_page.get_by_text("Open a dispute", exact=True).click()
        buyer_page.locator("#dispute-reason").select_option("QUALITY_ISSUE")
        buyer_page.locator("#dispute-details").fill("The logo is blurry at every size, and the colours are off.")
        buyer_page.locator("#dispute-file").set_input_files(
            files=[{"name": "blurry-logo.png", "mimeType": "image/png", "buffer": png_bytes(THUMBNAIL)}]
        )
        buyer_page.get_by_role("button", name="Open the dispute").click()
        expect(buyer_page.get_by_text("Dispute opened.")).to_be_visible()
        case = buyer_page.get_by_test_id("dispute-case")
        expect(buyer_page.get_by_test_id("dispute-status")).to_have_text("Open: waiting for support")
        expect(case).to_contain_text("The seller has until")
        thumbnail_shown(buyer_page)
        screenshot(case, "buyer-dispute")
        screenshot(buyer_page.get_by_test_id("dispute-forms"), "buyer-forms")

        # The buyer starts a message; the page stays live, and does not wipe it.
        buyer_page.evaluate("window.sameDocument = true")
        expect(buyer_page.locator("[data-order-live]")).to_have_attribute("data-live", "socket")
        buyer_page.get_by_label("Your message").fill("Also, the files are")

        # The seller (whose browser gets no WebSocket: their page polls) answers in the thread.
        seller_page = people("seller", websockets=False)
        log_in(seller_page, url, seller)
        seller_page.goto(order_url)
        expect(seller_page.get_by_test_id("dispute-case")).to_contain_text("You have until")
        thumbnail_shown(seller_page)
        seller_page.get_by_label("Your message").fill(SELLER_ANSWER)
        seller_page.get_by_role("button", name="Send the message").click()
        expect(seller_page.get_by_text("Message sent")).to_be_visible()
        expect(seller_page.get_by_test_id("dispute-thread")).to_contain_text("I can send sharper files today")
        expect(seller_page.get_by_test_id("dispute-deadline")).to_contain_text("You answered on")
        screenshot(seller_page.get_by_test_id("dispute-case"), "seller-thread")

        thread = buyer_page.get_by_test_id("dispute-thread")
        expect(thread).to_contain_text("I can send sharper files today", timeout=LIVE)
        expect(thread).to_contain_text("Sam Seller (seller)")
        expect(buyer_page.get_by_label("Your message")).to_have_value("Also, the files are")
        assert buyer_page.evaluate("window.sameDocument") is True
        buyer_page.get_by_label("Your message").fill("Also, the files are missing the black-and-white version.")
        buyer_page.get_by_role("button", name="Send the message").click()
        expect(buyer_page.get_by_text("Message sent")).to_be_visible()
        buyer_page.evaluate("window.sameDocument = true")

        # A support agent takes the case from the queue and resolves it with a split.
        agent_page = people("agent")
        admin_log_in(agent_page, url, agent)
        expect(agent_page.locator("#result_list")).to_contain_text(buyer.email)
        screenshot(agent_page, "admin-queue")
        agent_page.locator("input[name=_selected_action]").first.check()
        agent_page.locator("select[name=action]").select_option("assign_to_me")
        agent_page.get_by_role("button", name="Go").click()
        expect(agent_page.get_by_text("Assigned 1 dispute(s) to you.")).to_be_visible()
        expect(buyer_page.get_by_test_id("dispute-status")).to_have_text("Under review by support", timeout=LIVE)

        dispute = off_the_browser_thread(lambda: Dispute.objects.get())
        # The agent reads both sides on the case page: the buyer's picture, the seller's answer.
        agent_page.goto(f"{url}/admin/disputes/dispute/{dispute.pk}/change/")
        expect(agent_page.locator("img[src*='/evidence/']").first).to_be_visible()
        expect(agent_page.get_by_text(SELLER_ANSWER).first).to_be_visible()
        screenshot(agent_page, "case-page")
        agent_page.goto(f"{url}/admin/disputes/dispute/{dispute.pk}/resolve/")
        agent_page.locator("#id_decision").select_option("SPLIT")
        agent_page.locator("#id_release_amount").fill("25.00")
        agent_page.locator("#id_refund_amount").fill("15.00")
        agent_page.locator("#id_note").fill("The logo was delivered but not at the agreed quality: 25 / 15.")
        agent_page.get_by_role("button", name="Preview payouts").click()  # applies nothing
        expect(agent_page.locator("body")).to_contain_text("net")
        agent_page.locator("#id_confirm").check()
        screenshot(agent_page, "resolve")
        agent_page.get_by_role("button", name="Resolve and pay out").click()
        expect(agent_page.locator(".messagelist")).to_contain_text("Resolved", timeout=LIVE)

        # Both open order pages show the outcome by themselves (the seller's by polling).
        escrow = off_the_browser_thread(lambda: Escrow.objects.get())
        seller_net, buyer_net = (
            escrow_fees(amount=dollars * USD, platform_fee_percent=escrow.platform_fee_percent).net
            for dollars in (25, 15)
        )
        buyer_outcome = buyer_page.get_by_test_id("dispute-outcome")
        expect(buyer_outcome).to_contain_text(
            f"You received ${money_dollars(buyer_net)} after escrow fees", timeout=LIVE
        )
        expect(buyer_outcome).to_contain_text(f"The seller received ${money_dollars(seller_net)}")
        assert buyer_page.evaluate("window.sameDocument") is True
        expect(buyer_page.get_by_test_id("dispute-forms")).to_have_count(0)
        seller_outcome = seller_page.get_by_test_id("dispute-outcome")
        expect(seller_outcome).to_contain_text(
            f"You received ${money_dollars(seller_net)} after escrow fees", timeout=LIVE
        )
        expect(buyer_page.get_by_test_id("order-status")).to_contain_text("Closed")
        screenshot(buyer_page.get_by_test_id("dispute-case"), "outcome")

        # Their wallets hold what they received.
        buyer_page.get_by_role("link", name="Wallet", exact=True).click()
        expect(buyer_page.get_by_test_id("available")).to_have_text(f"${money_dollars(60 * USD + buyer_net)}")
        seller_page.get_by_role("link", name="Wallet", exact=True).click()
        expect(seller_page.get_by_test_id("available")).to_have_text(f"${money_dollars(seller_net)}")

    def chain_check():
        chain = Chain(url=settings.STELLAR_HORIZON_URL, passphrase=settings.STELLAR_NETWORK_PASSPHRASE)
        ledger_equals_chain(chain, TrustlessWorkClient(backoff=0.01), Escrow.objects.get(), buyer, seller)
        connection.close()
        return True

    assert off_the_browser_thread(chain_check)
