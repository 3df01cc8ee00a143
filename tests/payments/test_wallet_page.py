"""The member's wallet page, as a member uses it."""

import pytest

from payments.ledger import user_accounts
from payments.models import Withdrawal

pytestmark = pytest.mark.django_db(transaction=True)


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
    assert "Funds added" in page and "+$125.50" in page


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
    assert "does not accept USDC" in page and 'aria-invalid="true"' in page
    page = client.post("/wallet/", {"amount": "20.00", "destination": "hello"}).content.decode()
    assert "not a valid Stellar address" in page
    outside = chain.outside_account()
    page = client.post("/wallet/", {"amount": "60.00", "destination": outside.public_key}).content.decode()
    assert "Not enough funds: $50.00 available." in page
    available, held = user_accounts(user)
    assert (available.balance, held.balance) == (500_000_000, 0)
    assert not Withdrawal.objects.exists()


def test_withdrawal_form_sends_the_money(chain, client, funded_user):
    user = funded_user("50.00")
    client.force_login(user)
    outside = chain.outside_account()
    response = client.post(
        "/wallet/", {"amount": "20.00", "destination": outside.public_key, "memo": "x1"}, follow=True
    )
    page = response.content.decode()
    assert "$20.00 was sent to the destination" in page and 'data-testid="available">$30.00' in page
    assert "Withdrawal to " in page and "Put on hold" not in page  # one row for the withdrawal
    assert chain.usdc(outside.public_key) == 20


def test_wallet_page_queries_do_not_grow_with_history(chain, client, funded_user, django_assert_max_num_queries):
    from payments.ledger import hold_reserve, hold_void

    user = funded_user("100.00")
    client.force_login(user)
    hold_reserve(user=user, reference="first", amount=1_000)
    hold_void(user=user, reference="first")
    client.get("/wallet/")
    with django_assert_max_num_queries(20) as few:
        client.get("/wallet/")
    for number in range(30):
        hold_reserve(user=user, reference=f"r{number}", amount=1_000)
        hold_void(user=user, reference=f"r{number}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = client.get("/wallet/").content.decode()
    assert "Page 1 of 4" in page  # 63 movements: the deposit and 31 holds put on and released
    assert "Hold released" in client.get("/wallet/?page=2").content.decode()


def test_sub_cent_balances_show_the_cents_that_can_be_spent(chain, client, funded_user):
    """An escrow payout net of fees can end in fractions of a cent: the page rounds down, as the API does."""
    user = funded_user("73.2750000")
    client.force_login(user)
    page = client.get("/wallet/").content.decode()
    assert 'data-testid="available">$73.27' in page and "+$73.27" in page
    assert "73.28" not in page


def test_simulated_deposit_refuses_an_exponent_and_credits_nothing(chain, client, funded_user):
    user = funded_user("0")
    client.force_login(user)
    page = client.post("/wallet/simulate-deposit/", {"amount": "1e3"}, follow=True).content.decode()
    assert "such as 100 or 12.50" in page and "Simulated a deposit" not in page
    assert 'data-testid="available">$0.00' in page
    available, _ = user_accounts(user)
    assert available.balance == 0
