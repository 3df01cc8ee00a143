"""Adding funds with Airtm from the wallet page, and the top-up's own page (live by htmx)."""

import re
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.test import Client

from payments.models import Topup
from tests.factories import UserFactory
from tests.payments.topup_helpers import (
    airtm_credits,
    available,
    link,
    member_fixture,  # noqa: F401  (fixture "member")
    sandbox_fixture,  # noqa: F401  (fixture "sandbox")
)

pytestmark = pytest.mark.django_db(transaction=True)
S = Topup.Status


@pytest.fixture
def browser(client, member):
    client.force_login(member)
    return client


def start(browser, amount="12.50") -> tuple:
    response = browser.post("/wallet/topups/", {"amount": amount})
    return response, Topup.objects.filter(user=response.wsgi_request.user).order_by("-pk").first()


def poll(browser, topup: Topup):
    cache.delete(f"topup-refresh:{topup.public_id}")  # the page asks Airtm at most every few seconds
    return browser.get(f"/wallet/topups/{topup.public_id}/status/")


def test_the_wallet_offers_airtm_to_linked_members_only(client, sandbox, funded_user):
    unlinked = funded_user("0")
    client.force_login(unlinked)
    page = client.get("/wallet/").content.decode()
    assert 'action="/wallet/topups/"' not in page
    assert "Link your Airtm account</a> to add funds in dollars with Airtm" in page

    client.force_login(link(unlinked))
    page = client.get("/wallet/").content.decode()
    assert 'action="/wallet/topups/"' in page and "Add funds with Airtm" in page
    assert "Between $1.00 and $10,000.00" in page


def test_add_funds_goes_to_airtms_checkout_and_back_to_a_page_that_follows_it_live(
    browser, member, sandbox, django_assert_max_num_queries
):
    response, topup = start(browser, "12.50")
    assert response.status_code == 303
    assert (
        response["Location"] == topup.confirmation_uri == f"{sandbox.url}/sandbox/airtm/checkout/{topup.airtm_payin_id}"
    )
    assert topup.amount == 125_000_000 and topup.status == S.AWAITING_USER_CONFIRMATION
    assert topup.return_url == topup.cancel_url == f"{sandbox.url}/wallet/topups/{topup.public_id}/"

    with django_assert_max_num_queries(8):
        page = browser.get(f"/wallet/topups/{topup.public_id}/").content.decode()
    assert "Waiting for confirmation from Airtm" in page and "$12.50" in page
    assert f'hx-get="/wallet/topups/{topup.public_id}/status/"' in page and 'hx-trigger="every 2s"' in page
    assert "<script>" not in page and "USDC" not in page

    sandbox.pay(topup)  # paid on Airtm's page; Airtm sends the member back to the callback
    back = browser.get(f"/api/v1/topups/{topup.public_id}/callback", {"status": "confirmed"})
    assert back.status_code == 302 and back["Location"] == topup.return_url

    with django_assert_max_num_queries(12):
        fragment = poll(browser, topup).content.decode()
    assert 'data-status="TOPUP_SUCCEEDED"' in fragment
    assert re.search(r'data-testid="topup-new-balance">\$12\.50<', fragment)
    assert "hx-trigger" not in fragment  # finished: the page stops polling
    assert available(member) == Decimal("12.50") and len(airtm_credits(member)) == 1


def test_the_status_fragment_asks_airtm_at_most_every_few_seconds(browser, member, sandbox):
    _, topup = start(browser)
    cache.delete(f"topup-refresh:{topup.public_id}")
    browser.get(f"/wallet/topups/{topup.public_id}/status/")  # asks Airtm
    sandbox.pay(topup)
    fragment = browser.get(f"/wallet/topups/{topup.public_id}/status/").content.decode()  # too soon: not asked
    assert 'data-status="TOPUP_AWAITING_USER_CONFIRMATION"' in fragment
    assert 'data-status="TOPUP_SUCCEEDED"' in poll(browser, topup).content.decode()


def test_canceled_at_airtms_checkout_shows_canceled(browser, member, sandbox):
    _, topup = start(browser)
    sandbox.pay(topup, "cancel")
    back = browser.get(f"/api/v1/topups/{topup.public_id}/callback", {"status": "canceled"})
    assert back["Location"] == topup.cancel_url
    fragment = poll(browser, topup).content.decode()
    assert 'data-status="TOPUP_CANCELED"' in fragment and "Nothing was charged" in fragment
    assert available(member) == 0


def test_a_declined_payment_shows_failed(browser, member, sandbox):
    _, topup = start(browser)
    sandbox.pay(topup, "fail")
    fragment = poll(browser, topup).content.decode()
    assert 'data-status="TOPUP_FAILED"' in fragment and "declined" in fragment


def test_the_member_can_cancel_from_the_page(browser, member, sandbox):
    _, topup = start(browser)
    page = browser.get(f"/wallet/topups/{topup.public_id}/").content.decode()
    assert f'action="/wallet/topups/{topup.public_id}/cancel/"' in page
    response = browser.post(f"/wallet/topups/{topup.public_id}/cancel/")
    assert response.status_code == 302
    assert Topup.objects.get(pk=topup.pk).status == S.CANCELED
    assert sandbox.payins(topup.public_id)[0].status == "CANCELED"


def test_bad_amounts_and_provider_refusals_come_back_to_the_wallet(browser, member, sandbox):
    response, topup = start(browser, "0.50")
    assert response.status_code == 302 and response["Location"] == "/wallet/" and topup is None
    assert "between $1.00 and $10,000.00" in browser.get("/wallet/").content.decode()

    from sandbox.models import SandboxFault

    SandboxFault.objects.create(service="airtm", method="POST", path_contains="/payins", status_code=400, remaining=1)
    response, topup = start(browser, "5.00")
    assert response["Location"] == "/wallet/" and topup.status == S.FAILED
    assert "Nothing was charged" in browser.get("/wallet/").content.decode()


def test_only_the_owner_sees_a_top_up(browser, member, sandbox):
    _, topup = start(browser)
    stranger = Client()
    stranger.force_login(UserFactory())
    for path in ("", "status/"):
        assert stranger.get(f"/wallet/topups/{topup.public_id}/{path}").status_code == 404
    assert stranger.post(f"/wallet/topups/{topup.public_id}/cancel/").status_code == 404
    assert Client().get(f"/wallet/topups/{topup.public_id}/").status_code == 302  # to the login page
    assert Topup.objects.get(pk=topup.pk).status == S.AWAITING_USER_CONFIRMATION


def test_forms_refuse_a_post_without_the_csrf_token(member, sandbox):
    client = Client(enforce_csrf_checks=True)
    client.force_login(member)
    assert client.post("/wallet/topups/", {"amount": "5.00"}).status_code == 403
    assert not Topup.objects.exists()


def test_support_reads_top_ups_and_refreshes_them_from_airtm(client, member, sandbox, django_assert_max_num_queries):
    from django.contrib.auth.models import Group

    from backoffice.roles import SUPPORT_LEAD
    from payments.topups import topup_create

    lead = UserFactory(is_staff=True)
    lead.groups.add(Group.objects.get(name=SUPPORT_LEAD))
    client.force_login(lead)
    topup = topup_create(user=member, amount=Decimal("8.00"), actor_type="USER", actor_id=member.public_id)
    with django_assert_max_num_queries(15):
        listing = client.get("/admin/payments/topup/")
    assert listing.status_code == 200 and topup.public_id in listing.content.decode()
    assert client.get(f"/admin/payments/topup/{topup.pk}/change/").status_code == 200
    assert client.get("/admin/payments/topup/add/").status_code == 403  # read-only

    sandbox.pay(topup)
    response = client.post(
        "/admin/payments/topup/",
        {"action": "refresh_from_airtm", "index": 0, "_selected_action": [topup.pk]},
        follow=True,
    )
    said = [str(message) for message in response.context["messages"]]
    assert len(said) == 1 and said[0].startswith(f"{topup.public_id}: TOPUP_")  # what Airtm said
    assert Topup.objects.get(pk=topup.pk).status == S.SUCCEEDED
    assert available(member) == Decimal("8.00")


def test_no_airtm_form_where_the_airtm_rail_is_off(browser, member, sandbox, settings):
    settings.OFFERHUB_PAYMENTS_PROVIDER = "crypto"
    assert 'action="/wallet/topups/"' not in browser.get("/wallet/").content.decode()
    response, topup = start(browser)
    assert response["Location"] == "/wallet/" and topup is None
