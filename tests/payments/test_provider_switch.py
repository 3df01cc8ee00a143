"""OFFERHUB_PAYMENTS_PROVIDER (payments.providers): crypto, airtm or hybrid decides what GET /config
reports, what the API accepts and what the wallet page offers; nothing else changes."""

import itertools

import pytest
from django.core.exceptions import ImproperlyConfigured

from payments.ledger import user_accounts
from payments.models import Withdrawal
from payments.providers import payments_rails, rail_enabled, rail_required
from tests.factories import UserFactory
from tests.offerhub.test_settings import load_settings

pytestmark = pytest.mark.django_db(transaction=True)
keys = (f"provider-switch-{n}" for n in itertools.count())
RAIL_DISABLED = "RAIL_DISABLED"


@pytest.fixture
def writer(auth_client):
    return auth_client(scopes=["read", "write"])


def post(client, path: str, body):
    return client.post(f"/api/v1{path}", body, format="json", HTTP_IDEMPOTENCY_KEY=next(keys))


def refused_as_disabled(response, rail: str, provider: str, field: str = "") -> bool:
    error = response.json()["error"]
    assert response.status_code == 400, response.json()
    assert error["code"] == "INVALID_REQUEST"
    details = error["details"]
    assert (details["reason"], details["rail"], details["paymentsProvider"]) == (RAIL_DISABLED, rail, provider)
    assert details.get("field", "") == field
    assert "OFFERHUB_PAYMENTS_PROVIDER" in error["message"]
    return True


def not_refused_by_the_switch(response) -> bool:
    error = response.json().get("error")
    return error is None or error["details"].get("reason") != RAIL_DISABLED


# --- the setting --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "rails"),
    [("crypto", {"crypto"}), ("airtm", {"airtm"}), ("hybrid", {"crypto", "airtm"})],
)
def test_each_mode_offers_its_rails(settings, provider, rails):
    settings.OFFERHUB_PAYMENTS_PROVIDER = provider
    assert payments_rails() == frozenset(rails)
    assert rail_enabled("crypto") == ("crypto" in rails)
    assert rail_enabled("airtm") == ("airtm" in rails)


def test_hybrid_is_the_default_and_an_unknown_value_stops_the_start():
    assert load_settings().returncode == 0
    assert load_settings(OFFERHUB_PAYMENTS_PROVIDER="Airtm").returncode == 0  # case and spaces forgiven
    refused = load_settings(OFFERHUB_PAYMENTS_PROVIDER="paypal")
    assert refused.returncode != 0
    assert "ImproperlyConfigured" in refused.stderr
    assert "OFFERHUB_PAYMENTS_PROVIDER must be crypto, airtm or hybrid, not 'paypal'" in refused.stderr


def test_a_value_changed_at_run_time_is_checked_too(settings):
    settings.OFFERHUB_PAYMENTS_PROVIDER = "both"
    with pytest.raises(ImproperlyConfigured, match="OFFERHUB_PAYMENTS_PROVIDER"):
        rail_enabled("crypto")


def test_an_unknown_rail_is_a_programming_error_not_a_refusal(settings):
    with pytest.raises(ValueError, match="unknown payment rail"):
        rail_required("paypal")


# --- GET /config -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "airtm", "crypto"),
    [("crypto", False, True), ("airtm", True, False), ("hybrid", True, True)],
)
def test_config_reports_the_rails(client, settings, provider, airtm, crypto):
    settings.OFFERHUB_PAYMENTS_PROVIDER = provider
    data = client.get("/api/v1/config").json()["data"]
    assert data["features"]["airtm"] is airtm
    assert data["features"]["cryptoDeposits"] is crypto
    assert data["features"]["cryptoWithdrawals"] is crypto
    # Wire compatibility: the original's fields are all there, unchanged; `payments` is added.
    assert data["providers"] == {"fiat": "airtm", "escrow": "trustless_work", "payments": provider}
    assert {"milestones", "disputes", "sse", "trustlessWork"} <= set(data["features"])


# --- the API -----------------------------------------------------------------------------


def test_airtm_mode_refuses_crypto_withdrawals_and_the_deposit_address(chain, funded_user, writer, settings):
    user = funded_user("50.00")
    outside = chain.outside_account()
    settings.OFFERHUB_PAYMENTS_PROVIDER = "airtm"
    body = {"userId": user.public_id, "amount": "20.00", "destinationType": "crypto"}
    response = post(writer, "/withdrawals", {**body, "destinationRef": outside.public_key})
    assert refused_as_disabled(response, "crypto", "airtm", field="destinationType")
    assert response.json()["error"]["details"]["enabledRails"] == ["airtm"]
    assert not Withdrawal.objects.exists()
    available, held = user_accounts(user)
    assert (available.balance, held.balance) == (500_000_000, 0)
    assert chain.usdc(outside.public_key) == 0

    deposit = writer.get(f"/api/v1/users/{user.public_id}/wallet/deposit")
    assert refused_as_disabled(deposit, "crypto", "airtm")
    # The wallet itself (the Stellar account escrow runs on) is still read.
    assert writer.get(f"/api/v1/users/{user.public_id}/wallet").status_code == 200


def test_hybrid_and_crypto_modes_still_withdraw_to_stellar_and_give_the_address(chain, funded_user, writer, settings):
    user = funded_user("50.00")
    for provider in ("hybrid", "crypto"):
        settings.OFFERHUB_PAYMENTS_PROVIDER = provider
        outside = chain.outside_account()
        body = {"userId": user.public_id, "amount": "10.00", "destinationType": "crypto"}
        created = post(writer, "/withdrawals", {**body, "destinationRef": outside.public_key})
        assert created.status_code == 201, created.json()
        assert created.json()["data"]["status"] == "WITHDRAWAL_COMPLETED"
        deposit = writer.get(f"/api/v1/users/{user.public_id}/wallet/deposit")
        assert deposit.status_code == 200 and deposit.json()["data"]["address"] == user.wallet.public_key


@pytest.mark.parametrize("destination_type", ["bank", "airtm_balance"])
def test_crypto_mode_refuses_airtm_withdrawals(writer, settings, destination_type):
    user = UserFactory()
    settings.OFFERHUB_PAYMENTS_PROVIDER = "crypto"
    body = {"userId": user.public_id, "amount": "20.00", "destinationType": destination_type, "destinationRef": "x"}
    assert refused_as_disabled(post(writer, "/withdrawals", body), "airtm", "crypto", field="destinationType")
    settings.OFFERHUB_PAYMENTS_PROVIDER = "hybrid"  # the switch lets it through to the Airtm rail
    assert not_refused_by_the_switch(post(writer, "/withdrawals", body))
    assert not Withdrawal.objects.filter(destination_type="crypto").exists()


def test_crypto_mode_refuses_linking_an_airtm_account(writer, settings):
    user = UserFactory()
    settings.OFFERHUB_PAYMENTS_PROVIDER = "crypto"
    response = post(writer, f"/users/{user.public_id}/airtm/link", {"email": "ana@airtm.sandbox"})
    assert refused_as_disabled(response, "airtm", "crypto")
    user.refresh_from_db()
    assert not user.airtm_user_id


def test_bad_input_is_still_named_by_the_validation_when_the_rail_is_on(writer, settings):
    settings.OFFERHUB_PAYMENTS_PROVIDER = "airtm"
    for body in ([1, 2], {"destinationType": 7}, {"destinationType": "paypal"}):
        response = post(writer, "/withdrawals", body)
        assert response.status_code == 400 and response.json()["error"]["code"] == "VALIDATION_ERROR"


# --- the wallet page ---------------------------------------------------------------------

CRYPTO_PARTS = ('data-testid="deposit-address"', "Simulate a deposit", 'name="destination"', "create a test address")
AIRTM_PARTS = ('data-testid="airtm-link"', "Link your Airtm account")


@pytest.mark.parametrize(
    ("provider", "crypto", "airtm"),
    [("crypto", True, False), ("airtm", False, True), ("hybrid", True, True)],
)
def test_the_wallet_page_shows_only_the_rails_offered(
    chain, funded_user, client, settings, django_assert_max_num_queries, provider, crypto, airtm
):
    user = funded_user("0")
    client.force_login(user)
    client.get("/wallet/")  # the first visit creates what the page reads
    settings.OFFERHUB_PAYMENTS_PROVIDER = provider
    with django_assert_max_num_queries(25):
        page = client.get("/wallet/").content.decode()
    for part in CRYPTO_PARTS:
        assert (part in page) is crypto, part
    for part in AIRTM_PARTS:
        assert (part in page) is airtm, part
    assert ("/wallet/airtm/link/" in page) is airtm
    assert (client.get("/wallet/airtm/link/").status_code == 200) is airtm


def test_airtm_mode_accepts_no_crypto_from_the_wallet_page(chain, funded_user, client, settings):
    user = funded_user("50.00")
    client.force_login(user)
    outside = chain.outside_account()
    settings.OFFERHUB_PAYMENTS_PROVIDER = "airtm"
    withdrawal = {"amount": "20.00", "destination": outside.public_key, "confirmed": "yes"}  # as confirmed
    page = client.post("/wallet/", withdrawal).content.decode()
    assert "was sent to the destination" not in page
    assert client.post("/wallet/simulate-deposit/", {"amount": "10.00"})["Location"] == "/wallet/"
    assert client.post("/wallet/test-recipient/")["Location"] == "/wallet/"
    available, held = user_accounts(user)
    assert (available.balance, held.balance) == (500_000_000, 0)
    assert not Withdrawal.objects.exists()
    assert chain.usdc(outside.public_key) == 0

    settings.OFFERHUB_PAYMENTS_PROVIDER = "hybrid"  # the same form, with the rail on, sends the money
    sent = client.post("/wallet/", withdrawal, follow=True)
    assert "$20.00 was sent to the destination" in sent.content.decode()
    assert chain.usdc(outside.public_key) == 20
