"""A seller lists a service, a buyer adds funds and buys it, watches the payment being secured
live, the seller delivers, the buyer approves and the seller is paid: in a real browser.

Unlike the other browser tests, the order's escrow steps run in the background here, as in
production: a Celery worker thread takes the tasks (eager mode off), and the server is the
ASGI application under uvicorn, so the order page's WebSocket (ws/orders/<id>/) works. The
page must show each step without being reloaded.
"""

import logging
import threading
from contextlib import contextmanager
from decimal import Decimal

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection
from playwright.sync_api import expect

from marketplace.orders import seller_net
from offerhub.celery import app as celery_app
from payments.wallets import platform_bootstrap, wallet_ensure
from tests.factories import TEST_PASSWORD, CategoryFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
LIVE = 30_000  # ms: the background steps of an order over the sandbox take a few seconds


@contextmanager
def background_tasks():
    """From here on tasks go to the broker and a worker thread runs them, after the request
    that queued them has answered (as in production)."""
    root = logging.getLogger()
    logging_before = root.level, list(root.handlers)  # the embedded worker sets logging up its own way
    celery_app.control.purge()
    celery_app.conf.task_always_eager = False
    try:
        with start_worker(celery_app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=30):
            yield
    finally:
        celery_app.conf.task_always_eager = True
        root.setLevel(logging_before[0])
        root.handlers[:] = logging_before[1]


def log_in(page, url, user):
    page.goto(url + "/accounts/login/")
    page.locator("#id_username").fill(user.email)
    page.locator("#id_password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("navigation", name="Main navigation")).to_contain_text(f"Signed in as {user.display_name}")


def off_the_browser_thread(work):
    """Run `work` on a thread of its own: Playwright keeps an event loop on this one, and the
    event subscribers' async_to_sync (run by eager tasks) refuses to run beside it."""
    result = {}

    def run():
        try:
            result.update(value=work())
        finally:
            connection.close()  # the thread's own connection: none may outlive the test database

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    return result["value"]


def members():
    platform_bootstrap()
    CategoryFactory(name="Design", slug="design")
    seller, buyer = UserFactory(display_name="Sam Seller"), UserFactory(display_name="Bea Buyer")
    for user in (seller, buyer):
        wallet_ensure(user=user)  # activated at once: tasks are still eager here
    connection.close()
    return seller, buyer


def test_list_buy_follow_live_deliver_approve_and_get_paid(asgi_server, people):
    url = asgi_server
    seller, buyer = off_the_browser_thread(members)

    # The seller lists a service. Their browser gets no WebSocket: their order page polls instead.
    seller_page = people("seller", websockets=False)
    log_in(seller_page, url, seller)
    seller_page.goto(url + "/listings/new/")
    seller_page.locator("#id_title").fill("A logo for your shop")
    seller_page.locator("#id_category").select_option(label="Design")
    seller_page.locator("#id_description").fill("Three concepts, two rounds of changes, every file format.")
    seller_page.locator("#id_price").fill("40.00")
    seller_page.locator("#id_delivery_days").fill("5")
    seller_page.get_by_role("button", name="Publish the listing").click()
    expect(seller_page.get_by_text("Your listing is live")).to_be_visible()
    listing_url = seller_page.url

    with background_tasks():
        # The buyer adds funds and buys it.
        buyer_page = people("buyer")
        log_in(buyer_page, url, buyer)
        buyer_page.get_by_role("link", name="Wallet", exact=True).click()
        buyer_page.locator("#simulate-amount").fill("100.00")
        buyer_page.get_by_role("button", name="Simulate a deposit").click()
        expect(buyer_page.get_by_test_id("available")).to_have_text("$100.00")

        buyer_page.goto(listing_url)
        buyer_page.get_by_test_id("buy").click()
        expect(buyer_page.get_by_test_id("checkout-price")).to_have_text("$40.00")
        expect(buyer_page.get_by_test_id("checkout-available")).to_have_text("$100.00")
        net = Decimal(seller_net(amount=40 * 10_000_000)) / 10_000_000
        expect(buyer_page.get_by_test_id("seller-receives")).to_have_text(f"${net:.2f}")
        buyer_page.get_by_test_id("confirm").click()
        expect(buyer_page.get_by_text("Order placed.")).to_be_visible()

        # The payment is secured in the background; the page follows it without being reloaded.
        buyer_page.evaluate("window.sameDocument = true")
        live = buyer_page.locator("[data-order-live]")
        expect(live).to_have_attribute("data-live", "socket")
        expect(buyer_page.get_by_test_id("order-status")).to_have_text("In progress", timeout=LIVE)
        expect(buyer_page.get_by_test_id("timeline")).to_contain_text("Payment protection set up")
        expect(buyer_page.get_by_test_id("escrow-link")).to_be_visible()
        assert buyer_page.evaluate("window.sameDocument") is True

        # The seller delivers; the buyer's page offers to approve, still without a reload.
        seller_page.get_by_role("link", name="My sales").click()
        seller_page.get_by_role("link", name="A logo for your shop").click()
        expect(seller_page.get_by_test_id("order-status")).to_have_text("In progress")
        expect(seller_page.locator("[data-order-live]")).to_have_attribute("data-live", "polling")
        seller_page.get_by_label("What did you deliver?").fill("Three concepts attached, as promised.")
        seller_page.get_by_role("button", name="Mark as delivered").click()
        expect(seller_page.get_by_text("Marked delivered.")).to_be_visible()

        expect(buyer_page.get_by_test_id("approve")).to_be_visible(timeout=LIVE)
        expect(buyer_page.get_by_test_id("evidence")).to_contain_text("Three concepts attached")
        assert buyer_page.evaluate("window.sameDocument") is True
        buyer_page.get_by_test_id("approve").click()
        # Releasing cannot be undone: a confirmation names the amount and who receives it.
        expect(buyer_page.get_by_test_id("confirm-summary")).to_have_text("$40.00 goes from the escrow to Sam Seller.")
        buyer_page.get_by_test_id("confirm-yes").click()
        expect(buyer_page.get_by_text("the payment is on its way to the seller")).to_be_visible()
        expect(buyer_page.get_by_test_id("order-status")).to_have_text("Closed · seller paid", timeout=LIVE)

        # The seller's order page caught up by itself (polling); the wallet shows what they received.
        expect(seller_page.get_by_test_id("order-status")).to_have_text("Closed · seller paid", timeout=LIVE)
        seller_page.get_by_role("link", name="Wallet", exact=True).click()
        expect(seller_page.get_by_test_id("available")).to_have_text(f"${net:.2f}")
