"""Dollars in and out through Airtm, in a real browser against the sandbox Airtm.

A new member links their Airtm account, adds $50 through the sandbox's hosted checkout, watches
the money arrive without reloading, buys a service with it, and later withdraws the rest to
Airtm. A second member cancels at the checkout. Everything runs as in production: uvicorn
serves the ASGI application (and the sandboxes), a Celery worker thread runs the tasks, the
sandbox Airtm signs its webhooks with Svix and delivers them over HTTP to our endpoint.
"""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from marketplace.models import Order
from payments.ledger import user_accounts
from payments.models import JournalEntry, Topup, Withdrawal
from payments.wallets import platform_bootstrap, wallet_ensure
from sandbox.airtm_engine import airtm_payouts_advance, airtm_user_create
from sandbox.models import SandboxAirtmPayin, SandboxAirtmPayout
from tests.browser.test_order_journey import (
    LIVE,
    background_tasks,
    off_the_browser_thread,
)
from tests.factories import CategoryFactory, ListingFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
PASSPHRASE = "a-long-unique-passphrase"


@pytest.fixture
def sandbox_airtm(asgi_server, settings):
    """Our Airtm client, its checkout and the sandbox's webhooks all over HTTP on the test server."""
    settings.OFFERHUB_AIRTM_BASE_URL = asgi_server + "/sandbox/airtm/v2"
    settings.OFFERHUB_AIRTM_CHECKOUT_BASE_URL = asgi_server + "/sandbox/airtm/checkout"
    settings.SANDBOX_AIRTM_WEBHOOK_URL = asgi_server + "/api/v1/webhooks/airtm"
    settings.OFFERHUB_PAYMENTS_PROVIDER = "hybrid"
    settings.SITE_URL = asgi_server  # where Airtm sends the payer back
    return asgi_server


def sign_up(page, url, email, name):
    page.goto(url + "/accounts/signup/")
    page.locator("#id_email").fill(email)
    page.locator("#id_display_name").fill(name)
    page.locator("#id_password1").fill(PASSPHRASE)
    page.locator("#id_password2").fill(PASSPHRASE)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_text(f"Welcome to OfferHub, {name}!")).to_be_visible()


def link_airtm(page, email):
    page.get_by_role("link", name="Wallet", exact=True).click()
    page.get_by_test_id("airtm-link").get_by_role("link", name="Link your Airtm account").click()
    page.get_by_label("Your Airtm e-mail").fill(email)
    page.get_by_role("button", name="Link Airtm account").click()
    page.get_by_role("link", name="Wallet", exact=True).click()
    expect(page.get_by_test_id("airtm-link")).to_contain_text(f"Airtm account linked: {email}")


def start_topup(page, amount):
    topup = page.get_by_test_id("airtm-topup")
    topup.locator("#topup-amount").fill(amount)
    topup.get_by_role("button", name="Continue to Airtm").click()
    expect(page).to_have_url(re.compile(r"/sandbox/airtm/checkout/"))


def test_link_add_funds_with_airtm_buy_and_withdraw_to_airtm(sandbox_airtm, people):
    url = sandbox_airtm

    def setup():
        platform_bootstrap()
        airtm_user_create(email="nadia@airtm.sandbox", first_name="Nadia")
        seller = UserFactory(display_name="Sam Seller")
        wallet_ensure(user=seller)
        listing = ListingFactory(
            seller=seller,
            category=CategoryFactory(name="Design", slug="design"),
            title="A logo for your shop",
            price_cents=3_000,
        )
        return listing

    listing = off_the_browser_thread(setup)
    with background_tasks():
        page = people("nadia")
        sign_up(page, url, "nadia@example.test", "Nadia")
        link_airtm(page, "nadia@airtm.sandbox")
        expect(page.get_by_test_id("available")).to_have_text("$0.00")

        # She wants a $30 service: the checkout says what is missing and offers to add funds.
        page.goto(url + f"/listings/{listing.public_id}/")
        page.get_by_test_id("buy").click()
        checkout_url = page.url
        expect(page.get_by_test_id("checkout-available")).to_have_text("$0.00")
        page.get_by_test_id("add-funds").click()
        expect(page.get_by_test_id("funds-for-checkout")).to_be_visible()

        # Add $50 with Airtm: off to the hosted checkout, pay, and back to a page that waits.
        start_topup(page, "50.00")
        page.get_by_role("button", name="Pay $50.00").click()
        expect(page).to_have_url(re.compile(r"/wallet/topups/topup_"))
        page.evaluate("window.sameDocument = true")
        status = page.get_by_test_id("topup-status")
        # The redirect proved nothing: the webhook, confirmed with Airtm, and the USDC bridge do.
        expect(status).to_have_attribute("data-status", "TOPUP_SUCCEEDED", timeout=LIVE)
        expect(page.get_by_test_id("topup-new-balance")).to_have_text("$50.00")
        assert page.evaluate("window.sameDocument") is True  # it arrived live, without a reload

        # Back to the same checkout, with the new balance; the payment is secured in the background.
        page.get_by_test_id("back-to-checkout").click()
        assert page.url == checkout_url
        expect(page.get_by_test_id("checkout-available")).to_have_text("$50.00")
        page.get_by_test_id("confirm").click()
        expect(page.get_by_text("Order placed.")).to_be_visible()
        expect(page.get_by_test_id("order-status")).to_have_text("In progress", timeout=LIVE)

        # Later, withdraw the remaining $20 to Airtm, after a confirmation naming the amount and the account.
        page.get_by_role("link", name="Wallet", exact=True).click()
        expect(page.get_by_test_id("available")).to_have_text("$20.00")
        added = page.get_by_test_id("history-row").filter(has_text="Added with Airtm")
        expect(added.get_by_test_id("history-amount")).to_contain_text("+$50.00")
        withdraw = page.get_by_test_id("airtm-withdraw")
        expect(withdraw.get_by_test_id("airtm-withdraw-email")).to_have_text("nadia@airtm.sandbox")
        withdraw.get_by_label("Amount (USD)").fill("20.00")
        withdraw.get_by_role("button", name="Withdraw to Airtm").click()
        expect(page.get_by_test_id("confirm-summary")).to_contain_text("$20.00")
        expect(page.get_by_test_id("confirm-summary")).to_contain_text("nadia@airtm.sandbox")
        expect(page.get_by_test_id("available")).to_have_count(0)  # nothing sent yet
        page.get_by_test_id("confirm-yes").click()
        expect(page.get_by_text("$20.00 is on its way to your Airtm account")).to_be_visible()
        expect(page.get_by_test_id("available")).to_have_text("$0.00")
        expect(page.get_by_test_id("on-hold")).to_have_text("$20.00")

        # Airtm pays it (the sandbox moves the payout along and sends its webhooks).
        for hours in (3, 6):  # committed → pending → completed, a step each
            off_the_browser_thread(
                lambda hours=hours: airtm_payouts_advance(now=timezone.now() + timedelta(hours=hours))
            )

        def paid():
            page.reload()
            return page.get_by_test_id("airtm-withdrawal-status").first.inner_text()

        for _ in range(60):
            if paid() == "Paid to your Airtm account":
                break
            page.wait_for_timeout(500)
        expect(page.get_by_test_id("airtm-withdrawal-status").first).to_have_text("Paid to your Airtm account")
        expect(page.get_by_test_id("on-hold")).to_have_text("$0.00")

    def books():
        user = Topup.objects.get().user
        available, held = user_accounts(user)
        result = {
            "balances": (available.balance, held.balance),
            "topup_credits": JournalEntry.objects.filter(kind="topup").count(),
            "payins": SandboxAirtmPayin.objects.count(),
            "payouts": list(SandboxAirtmPayout.objects.values_list("status", flat=True)),
            "withdrawal": Withdrawal.objects.get(purpose="withdrawal").status,
            "order": Order.objects.get().status,
        }
        return result

    assert off_the_browser_thread(books) == {
        "balances": (0, 0),
        "topup_credits": 1,
        "payins": 1,
        "payouts": ["COMPLETED"],
        "withdrawal": Withdrawal.Status.COMPLETED,
        "order": "IN_PROGRESS",
    }


def test_canceling_at_the_checkout_adds_nothing(sandbox_airtm, people):
    url = sandbox_airtm

    def setup():
        platform_bootstrap()
        airtm_user_create(email="omar@airtm.sandbox", first_name="Omar")

    off_the_browser_thread(setup)
    with background_tasks():
        page = people("omar")
        sign_up(page, url, "omar@example.test", "Omar")
        link_airtm(page, "omar@airtm.sandbox")
        start_topup(page, "25.00")
        page.get_by_role("button", name="Cancel", exact=True).click()
        expect(page).to_have_url(re.compile(r"/wallet/topups/topup_"))
        expect(page.get_by_test_id("topup-status")).to_have_attribute("data-status", "TOPUP_CANCELED", timeout=LIVE)
        expect(page.get_by_test_id("topup-status")).to_contain_text("Nothing was charged.")
        page.get_by_role("link", name="Back to your wallet").click()
        expect(page.get_by_test_id("available")).to_have_text("$0.00")
