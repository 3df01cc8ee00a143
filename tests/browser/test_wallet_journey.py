"""A new member signs up, adds funds and withdraws them, in a real browser (Debian's chromium)."""

import re

import pytest
from playwright.sync_api import expect

from payments.wallets import platform_bootstrap
from tests.payments.conftest import Chain

pytestmark = pytest.mark.django_db(transaction=True)


def test_sign_up_add_funds_and_withdraw(page, live_server, settings):
    settings.STELLAR_HORIZON_URL = live_server.url + "/sandbox/horizon"
    platform_bootstrap()
    chain = Chain(url=settings.STELLAR_HORIZON_URL, passphrase=settings.STELLAR_NETWORK_PASSPHRASE)
    exchange = chain.outside_account()

    page.goto(live_server.url + "/")
    page.get_by_role("link", name="Sign up").first.click()
    page.locator("#id_email").fill("alex@example.test")
    page.locator("#id_display_name").fill("Alex")
    page.locator("#id_password1").fill("a-long-unique-passphrase")
    page.locator("#id_password2").fill("a-long-unique-passphrase")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_text("Welcome to OfferHub, Alex!")).to_be_visible()

    page.get_by_role("link", name="Wallet", exact=True).click()
    expect(page.get_by_test_id("available")).to_have_text("$0.00")
    expect(page.get_by_text("No activity yet")).to_be_visible()

    page.locator("#simulate-amount").fill("80.00")
    page.get_by_role("button", name="Simulate a deposit").click()
    expect(page.get_by_test_id("available")).to_have_text("$80.00")
    expect(page.get_by_role("cell", name="Deposit", exact=True)).to_be_visible()

    withdraw = page.locator("section", has_text="Withdraw")
    withdraw.locator("#id_amount").fill("30.00")
    withdraw.locator("#id_destination").fill("not-an-address")
    withdraw.get_by_role("button", name="Withdraw").click()
    expect(page.get_by_text("not a valid Stellar address")).to_be_visible()
    expect(page.get_by_test_id("available")).to_have_text("$80.00")

    withdraw = page.locator("section", has_text="Withdraw")
    withdraw.locator("#id_destination").fill(exchange.public_key)
    withdraw.get_by_role("button", name="Withdraw").click()
    # Sent on chain, it cannot come back: the amount and the address are confirmed first.
    expect(page.get_by_test_id("confirm-summary")).to_contain_text("$30.00")
    expect(page.get_by_test_id("confirm-page")).to_contain_text(exchange.public_key)
    page.get_by_test_id("confirm-yes").click()
    expect(page.get_by_text(re.compile(r"\$30\.00 was sent to the destination"))).to_be_visible()
    sent = page.get_by_test_id("history-row").first  # newest first: the payment, after its hold
    expect(sent.get_by_role("cell", name=re.compile(r"^Withdrawal to G.* Sent\.$"))).to_be_visible()
    expect(sent.get_by_test_id("history-available")).to_have_text("$50.00")
    expect(page.get_by_test_id("available")).to_have_text("$50.00")
    assert chain.usdc(exchange.public_key) == 30
