"""The wallet page's "Withdraw to Airtm" block, as a member uses it (sandbox Airtm and chain over HTTP)."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from payments.ledger import user_accounts
from payments.models import Withdrawal
from sandbox.airtm_engine import airtm_payouts_advance
from sandbox.models import SandboxAirtmPayout

pytestmark = pytest.mark.django_db(transaction=True)

CANCEL = re.compile(r'action="(/wallet/airtm/withdrawals/[^"]+/cancel/)"')


def withdraw(client, amount: str, **extra):
    """The form, then its confirmation page (which names the amount and the Airtm account)."""
    data = {"form": "airtm-withdraw", "airtm-amount": amount, **extra}
    asked = client.post("/wallet/", data, follow=True)
    if 'data-testid="confirm-page"' not in asked.content.decode():
        return asked  # refused before the confirmation
    return client.post("/wallet/", {**data, "confirmed": "yes"}, follow=True)


def test_unlinked_members_are_sent_to_link_their_account(chain, client, funded_user):
    client.force_login(funded_user("50.00"))
    page = client.get("/wallet/").content.decode()
    assert 'data-testid="airtm-withdraw"' in page and "/wallet/airtm/link/" in page
    assert 'name="airtm-amount"' not in page
    assert withdraw(client, "20.00").redirect_chain[-1][0] == "/wallet/airtm/link/"
    assert not Withdrawal.objects.exists()


def test_withdraw_to_airtm_commits_shows_status_and_cancel_only_while_allowed(chain, client, linked):
    user = linked("100.00")
    client.force_login(user)
    page = client.get("/wallet/").content.decode()
    assert user.airtm_email in page and 'name="airtm-amount"' in page
    sent = withdraw(client, "30.00").content.decode()
    assert "$30.00 is on its way to your Airtm account" in sent
    assert "USDC" not in sent.split('id="airtm-withdraw-heading"')[1].split("</section>")[0]
    withdrawal = Withdrawal.objects.get()
    assert withdrawal.status == Withdrawal.Status.COMMITTED and withdrawal.destination_type == "airtm_balance"
    assert SandboxAirtmPayout.objects.get().status == "COMMITTED"
    assert "Sent to Airtm" in sent and "\u2212$30.00" in sent
    # Cancel is offered while it may still work (our COMMITTED may already be PENDING at Airtm);
    # Airtm has the last word: COMMITTED there is refused, PENDING there is canceled.
    assert CANCEL.search(sent) is not None
    refused = client.post(CANCEL.search(sent).group(1), follow=True).content.decode()
    assert "can no longer be canceled" in refused
    airtm_payouts_advance(now=timezone.now() + timedelta(hours=1))  # PENDING at Airtm: cancel allowed
    done = client.post(CANCEL.search(sent).group(1), follow=True).content.decode()
    assert "The withdrawal was canceled" in done
    assert "Canceled: the money is back in your balance" in done and CANCEL.search(done) is None
    history = done.split('data-testid="history"')[1]
    assert "Withdrawal to Airtm canceled: money back" in history and "Withdrawal to Airtm" in history
    available, held = user_accounts(user)
    assert (available.balance, held.balance) == (1_000_000_000, 0)


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("5.00", "Withdrawals must be between $10.00 and $5,000.00."),
        ("abc", "Enter the amount in dollars"),
        ("100.01", "Not enough funds: $100.00 available."),
    ],
)
def test_errors_are_named_on_the_amount_and_move_nothing(chain, client, linked, amount, message):
    client.force_login(linked("100.00"))
    page = withdraw(client, amount).content.decode()
    assert re.search(r'id="id_airtm-amount-errors">[^<]*' + re.escape(message), page), page
    assert not Withdrawal.objects.exists()


def test_another_members_withdrawal_cannot_be_canceled(chain, client, linked):
    owner, other = linked("100.00"), linked("20.00")
    client.force_login(owner)
    withdraw(client, "30.00")
    withdrawal = Withdrawal.objects.get()
    client.force_login(other)
    assert client.post(f"/wallet/airtm/withdrawals/{withdrawal.public_id}/cancel/").status_code == 404
    assert Withdrawal.objects.get().status == Withdrawal.Status.COMMITTED


def test_forms_without_the_csrf_token_are_refused(chain, linked):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(linked("100.00"))
    assert browser.post("/wallet/", {"form": "airtm-withdraw", "airtm-amount": "20.00"}).status_code == 403
    assert browser.post("/wallet/airtm/withdrawals/wd_x/cancel/").status_code == 403
    assert not Withdrawal.objects.exists()


def test_page_queries_do_not_grow_with_airtm_withdrawals(chain, client, linked, django_assert_max_num_queries):
    user = linked("1000.00")
    client.force_login(user)
    withdraw(client, "10.00")
    client.get("/wallet/")
    with CaptureQueriesContext(connection) as one:
        client.get("/wallet/")
    count = len(one.captured_queries)  # read now: the next request resets the connection's log
    for _ in range(4):
        withdraw(client, "10.00")
    with django_assert_max_num_queries(count):
        page = client.get("/wallet/").content.decode()
    assert page.count('data-testid="airtm-withdrawal"') == 5
    assert count <= 25


def test_with_the_airtm_rail_off_no_form_and_nothing_is_created(chain, client, linked, settings):
    settings.OFFERHUB_PAYMENTS_PROVIDER = "crypto"
    client.force_login(linked("100.00"))
    assert 'data-testid="airtm-withdraw"' not in client.get("/wallet/").content.decode()
    page = withdraw(client, "20.00").content.decode()
    assert "Withdrawals to Airtm are not offered here." in page
    assert not Withdrawal.objects.exists()
