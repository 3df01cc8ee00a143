"""The member's wallet page, as a member uses it."""

import html
import re
from dataclasses import dataclass
from decimal import Decimal as D
from urllib.parse import parse_qs, urlparse

import pytest
from stellar_sdk import Keypair

from payments.ledger import user_accounts
from payments.models import Withdrawal
from tests.escrow.conftest import trustless_work  # noqa: F401  (the sandbox escrow, for the order flows)

pytestmark = pytest.mark.django_db(transaction=True)

ROW = re.compile(r'<tr data-testid="history-row">(.*?)</tr>', re.S)
CELL = re.compile(r"<td[^>]*>(.*?)</td>", re.S)
LINK = re.compile(r'<a href="([^"]+)" data-testid="history-order">')
TAG = re.compile(r"<[^>]+>")


@dataclass
class Row:
    what: str
    amount: str
    available: D
    on_hold: D
    link: str | None


def text(fragment: str) -> str:
    return " ".join(html.unescape(TAG.sub(" ", fragment)).split())


def dollars(fragment: str) -> D:
    return D(text(fragment).lstrip("$").replace(",", ""))


def history(page: str) -> list[Row]:
    """The history table's rows, newest first, as the member reads them."""
    rows = []
    for row in ROW.findall(page):
        _, what, amount, available, on_hold = CELL.findall(row)
        link = LINK.search(what)
        rows.append(Row(text(what), text(amount), dollars(available), dollars(on_hold), link and link.group(1)))
    return rows


def change(row: Row) -> tuple[D, D]:
    """(available, on hold) change the row's amount column says it made."""
    amount = D(re.search(r"\$([\d,]+\.\d\d)", row.amount).group(1).replace(",", ""))
    if row.amount.startswith("+"):
        return None, amount  # an inflow: the total grows by the amount
    if row.amount.startswith("\u2212"):
        return None, -amount
    if "from available to on hold" in row.amount:
        return -amount, amount
    assert "from on hold to available" in row.amount, row.amount
    return amount, -amount


def reconciles(page: str) -> list[Row]:
    """The newest row's balances are the ones at the top of the page, and each row's balances are
    the older row's plus what its amount column says; the oldest row starts from the footer's."""
    rows = history(page)
    assert rows, "no history"
    if "Newer</a>" not in page:  # the first page: it ends at the balances shown above it
        assert f'data-testid="available">${rows[0].available:,.2f}<' in page
        assert f'data-testid="on-hold">${rows[0].on_hold:,.2f}<' in page
    footer = re.search(r'data-testid="history-start">(.*?)</tr>', page, re.S).group(1)
    _, available, on_hold = CELL.findall(footer)
    older = Row("start", "", dollars(available), dollars(on_hold), None)
    for row in reversed(rows):
        moved, total = change(row)
        if moved is None:  # in or out: the total changes by the amount
            assert row.available + row.on_hold - older.available - older.on_hold == total, row
        else:  # inside the balance: between available and on hold, the total unchanged
            assert (row.available - older.available, row.on_hold - older.on_hold) == (moved, total), row
        older = row
    return rows


def test_visitors_are_sent_to_log_in(client):
    response = client.get("/wallet/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_simulated_deposit_shows_in_balance_and_history(chain, client, funded_user):
    user = funded_user("0")
    client.force_login(user)
    page = client.get("/wallet/").content.decode()
    assert "No activity yet" in page and 'data-testid="available">$0.00' in page
    assert "USDC" not in page.split("Advanced: deposit details")[0]  # no jargon before the advanced part
    response = client.post("/wallet/simulate-deposit/", {"amount": "125.50"}, follow=True)
    page = response.content.decode()
    assert "Simulated a deposit of $125.50" in page
    assert 'data-testid="available">$125.50' in page
    (deposit,) = history(page)
    assert (deposit.what, deposit.amount, deposit.link) == ("Deposit", "+$125.50", None)
    reconciles(page)


def test_simulate_button_only_in_sandbox_mode(chain, client, funded_user, settings):
    user = funded_user("0")
    client.force_login(user)
    assert "Simulate a deposit" in client.get("/wallet/").content.decode()
    settings.SANDBOX_PROVIDERS = []
    assert "Simulate a deposit" not in client.get("/wallet/").content.decode()
    client.post("/wallet/simulate-deposit/", {"amount": "10.00"})
    available, _ = user_accounts(user)
    assert available.balance == 0


def test_withdrawal_form_names_the_problem_and_moves_nothing(chain, client, funded_user):
    user = funded_user("50.00")
    client.force_login(user)
    no_trust = chain.outside_account(trustline=False)
    page = client.post("/wallet/", {"amount": "20.00", "destination": no_trust.public_key}).content.decode()
    assert "cannot receive USDC yet: its owner must add USDC" in page and 'aria-invalid="true"' in page
    unopened = Keypair.random().public_key
    page = client.post("/wallet/", {"amount": "20.00", "destination": unopened}).content.decode()
    assert "No Stellar account exists at this address yet. Its owner must first open it" in page
    page = client.post("/wallet/", {"amount": "20.00", "destination": "hello"}).content.decode()
    assert "not a valid Stellar address" in page
    outside = chain.outside_account()
    page = client.post("/wallet/", {"amount": "60.00", "destination": outside.public_key}).content.decode()
    assert "Not enough funds: $50.00 available." in page
    available, held = user_accounts(user)
    assert (available.balance, held.balance) == (500_000_000, 0)
    assert not Withdrawal.objects.exists()


def test_in_the_sandbox_a_test_address_that_accepts_usdc_is_made_and_paid(chain, client, funded_user, settings):
    user = funded_user("50.00")
    client.force_login(user)
    assert "create a test address that accepts USDC" in client.get("/wallet/").content.decode()

    made = client.post("/wallet/test-recipient/")
    address = parse_qs(urlparse(made["Location"]).query)["destination"][0]
    form = client.get(made["Location"]).content.decode()
    assert f'value="{address}"' in form  # filled in
    assert chain.usdc(address) == 0  # open, and trusting USDC
    sent = client.post(
        "/wallet/", {"amount": "12.00", "destination": address, "confirmed": "yes"}, follow=True
    ).content.decode()
    assert "$12.00 was sent to the destination" in sent
    assert chain.usdc(address) == 12

    settings.SANDBOX_PROVIDERS = []
    assert "create a test address" not in client.get("/wallet/").content.decode()
    assert client.post("/wallet/test-recipient/")["Location"] == "/wallet/"


def test_withdrawal_form_sends_the_money(chain, client, funded_user):
    user = funded_user("50.00")
    client.force_login(user)
    outside = chain.outside_account()
    asked = client.post("/wallet/", {"amount": "20.00", "destination": outside.public_key, "memo": "x1"})
    question = asked.content.decode()  # sent on chain, it cannot come back: confirmed first, nothing moved yet
    assert "Send this withdrawal?" in question and outside.public_key in question and "$20.00" in question
    assert 'name="confirmed" value="yes"' in question and not Withdrawal.objects.exists()
    response = client.post(
        "/wallet/",
        {"amount": "20.00", "destination": outside.public_key, "memo": "x1", "confirmed": "yes"},
        follow=True,
    )
    page = response.content.decode()
    assert "$20.00 was sent to the destination" in page and 'data-testid="available">$30.00' in page
    short = f"{outside.public_key[:4]}\u2026{outside.public_key[-4:]}"
    sent, held, deposit = history(page)
    assert (sent.what, sent.amount, sent.link) == (f"Withdrawal to {short} Sent.", "\u2212$20.00", None)
    assert (held.what, held.amount) == (
        f"Withdrawal to {short} On hold while it is sent.",
        "$20.00 from available to on hold",
    )
    assert (sent.available, sent.on_hold, held.available, held.on_hold) == (D("30.00"), 0, D("30.00"), D("20.00"))
    assert deposit.what == "Deposit"
    reconciles(page)
    assert chain.usdc(outside.public_key) == 20


def test_wallet_page_queries_do_not_grow_with_history(chain, client, funded_user, django_assert_max_num_queries):
    from payments.ledger import hold_reserve, hold_void

    user = funded_user("100.00")
    client.force_login(user)
    hold_reserve(user=user, reference="first", amount=100_000)
    hold_void(user=user, reference="first")
    client.get("/wallet/")
    with django_assert_max_num_queries(20) as few:
        client.get("/wallet/")
    for number in range(30):
        hold_reserve(user=user, reference=f"r{number}", amount=100_000)
        hold_void(user=user, reference=f"r{number}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = client.get("/wallet/").content.decode()
    assert "Page 1 of 4" in page  # 63 movements: the deposit and 31 holds put on and released
    second = client.get("/wallet/?page=2").content.decode()
    assert "Hold released for order r" in second
    reconciles(second)


def test_sub_cent_balances_show_the_cents_that_can_be_spent(chain, client, funded_user):
    """An escrow payout net of fees can end in fractions of a cent: the page rounds down, as the API does."""
    user = funded_user("73.2750000")
    client.force_login(user)
    page = client.get("/wallet/").content.decode()
    assert 'data-testid="available">$73.27' in page and history(page)[0].amount == "+$73.27"
    assert "73.28" not in page


def test_simulated_deposit_refuses_an_exponent_and_credits_nothing(chain, client, funded_user):
    user = funded_user("0")
    client.force_login(user)
    page = client.post("/wallet/simulate-deposit/", {"amount": "1e3"}, follow=True).content.decode()
    assert "such as 100 or 12.50" in page and "Simulated a deposit" not in page
    assert 'data-testid="available">$0.00' in page
    available, _ = user_accounts(user)
    assert available.balance == 0


# --- Orders in the history, through the real flows (web checkout, escrow on the sandbox chain) ---------


def fees(gross: D) -> D:
    """The escrow fees of a payout as the page shows them: what the receiver does not get."""
    from escrow.services import escrow_fees
    from offerhub.money import money_dollars

    stroops = int(gross * USD)
    return gross - money_dollars(escrow_fees(amount=stroops, platform_fee_percent=D("5")).net)


USD = 10_000_000


def web_order(buyer_client, seller, title: str, price_cents: int) -> str:
    """A web checkout of a new listing of the seller's: the order page's path."""
    from tests.factories import ListingFactory
    from tests.marketplace.test_order_pages import checkout_token

    listing = ListingFactory(seller=seller, title=title, price_cents=price_cents)
    response = buyer_client.post(
        f"/listings/{listing.public_id}/checkout/",
        {"token": checkout_token(buyer_client, listing), "price_cents": price_cents},
    )
    assert response.status_code == 302, response.content
    return response["Location"]


def logged_in(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


@pytest.mark.usefixtures("trustless_work")
def test_an_order_paid_and_released_reads_as_hold_escrow_and_payment(chain, funded_user):
    buyer, seller = funded_user("100.00"), funded_user("0")
    buyer_client, seller_client = logged_in(buyer), logged_in(seller)
    order_page = web_order(buyer_client, seller, "Logo design", 4_000)
    seller_client.post(order_page + "deliver/", {"evidence_text": "Final logo", "evidence_link": "https://x.example/l"})
    buyer_client.post(order_page + "release/")

    funded, held, deposit = reconciles(buyer_client.get("/wallet/").content.decode())
    assert (held.what, held.amount, held.link) == (
        "Money on hold for order \u201cLogo design\u201d",
        "$40.00 from available to on hold",
        order_page,
    )
    assert (held.available, held.on_hold) == (D("60.00"), D("40.00"))
    assert (funded.what, funded.amount, funded.link) == (
        "Escrow funded for order \u201cLogo design\u201d Paid from your hold into the order's escrow.",
        "\u2212$40.00",
        order_page,
    )
    assert (funded.available, funded.on_hold) == (D("60.00"), 0)
    assert (deposit.what, deposit.amount) == ("Deposit", "+$100.00")

    (paid,) = reconciles(seller_client.get("/wallet/").content.decode())
    net = D("40.00") - fees(D("40.00"))
    assert fees(D("40.00")) == D("2.12")  # 0.3 % Trustless Work + 5 % platform
    assert (paid.what, paid.amount, paid.link) == (
        "Paid to you for order \u201cLogo design\u201d $40.00 from the escrow, less $2.12 in escrow fees.",
        f"+${net}",
        order_page,
    )
    assert (paid.available, paid.on_hold) == (net, 0)
    assert logged_in(seller).get(paid.link).status_code == 200  # the link is the order's page


def test_a_canceled_order_releases_its_hold_back_to_available(chain, funded_user):
    from marketplace.orders import OrderActor, order_create, order_reserve

    buyer, seller = funded_user("50.00"), funded_user("0")
    actor = OrderActor.for_user(buyer)
    order, _ = order_create(buyer=buyer, seller=seller, amount=30 * USD, title="Logo design", actor=actor)
    order_reserve(order=order, actor=actor)
    client = logged_in(buyer)
    client.post(f"/orders/{order.public_id}/cancel/", {"reason": "changed my mind"})

    released, held, _ = reconciles(client.get("/wallet/").content.decode())
    link = f"/orders/{order.public_id}/"
    assert (held.what, held.amount, held.link) == (
        "Money on hold for order \u201cLogo design\u201d",
        "$30.00 from available to on hold",
        link,
    )
    assert (released.what, released.amount, released.link) == (
        "Hold released: order \u201cLogo design\u201d canceled",
        "$30.00 from on hold to available",
        link,
    )
    assert (released.available, released.on_hold) == (D("50.00"), 0)
    # Someone else's order is neither named nor linked in a stranger's wallet.
    assert "Logo design" not in logged_in(funded_user("0")).get("/wallet/").content.decode()


@pytest.mark.usefixtures("trustless_work")
def test_a_refund_and_a_dispute_split_say_so_with_the_fees(chain, funded_user, auth_client):
    from disputes.models import Dispute
    from tests.marketplace.test_dispute_case_api import post

    buyer, seller = funded_user("100.00"), funded_user("0")
    buyer_client, seller_client = logged_in(buyer), logged_in(seller)
    refunded = web_order(buyer_client, seller, "Website copy", 1_000)
    split = web_order(buyer_client, seller, "Logo design", 3_000)
    seller_client.post(refunded + "refund/", {"reason": "Cannot take it on", "confirmed": "yes"})
    buyer_client.post(split + "dispute/", {"reason": "NOT_DELIVERED", "details": "Half of it"})
    support = auth_client(scopes=["read", "support"])
    case = Dispute.objects.get().public_id
    assert post(support, f"/disputes/{case}/assign", {"assignedTo": "agent-ana"}).status_code == 200
    resolved = post(
        support, f"/disputes/{case}/resolve", {"decision": "SPLIT", "releaseAmount": "18.00", "refundAmount": "12.00"}
    )
    assert resolved.status_code == 200, resolved.content

    rows = reconciles(buyer_client.get("/wallet/").content.decode())
    share, back = rows[0], next(row for row in rows if row.what.startswith("Refunded"))
    assert (back.what, back.amount, back.link) == (
        "Refunded to you from order \u201cWebsite copy\u201d $10.00 from the escrow, less "
        f"${fees(D('10.00'))} in escrow fees.",
        f"+${D('10.00') - fees(D('10.00'))}",
        refunded,
    )
    assert (share.what, share.link) == (
        "Dispute split: your share of order \u201cLogo design\u201d Your share, less its part of the escrow fees.",
        split,
    )
    assert share.amount == f"+${D('12.00') - fees(D('12.00'))}"
    assert "Paid out from an order's escrow" not in buyer_client.get("/wallet/").content.decode()

    (seller_share,) = reconciles(seller_client.get("/wallet/").content.decode())
    assert seller_share.what.startswith("Dispute split: your share of order \u201cLogo design\u201d")
    assert (seller_share.amount, seller_share.link) == (f"+${D('18.00') - fees(D('18.00'))}", split)


def test_history_with_orders_costs_the_same_queries_for_1_or_8_orders(
    chain, funded_user, client, django_assert_max_num_queries
):
    from marketplace.orders import OrderActor, order_cancel, order_create, order_reserve

    buyer, seller = funded_user("100.00"), funded_user("0")
    actor = OrderActor.for_user(buyer)

    def reserved_and_canceled(number):
        order, _ = order_create(buyer=buyer, seller=seller, amount=USD, title=f"Order {number}", actor=actor)
        order_reserve(order=order, actor=actor)
        order_cancel(order=order, actor=actor)

    reserved_and_canceled(0)
    client.force_login(buyer)
    client.get("/wallet/")
    with django_assert_max_num_queries(20) as few:
        client.get("/wallet/")
    for number in range(1, 8):
        reserved_and_canceled(number)
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = client.get("/wallet/").content.decode()
    assert page.count('data-testid="history-order"') == 16
    reconciles(page)
