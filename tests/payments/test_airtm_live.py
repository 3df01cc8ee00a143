"""Contract tests against Airtm's staging: `OFFERHUB_AIRTM_API_KEY=… OFFERHUB_AIRTM_API_SECRET=… pytest -m live`.

They check what the sandbox Airtm is built on (paths, Basic auth, shapes, statuses, reason codes,
exact amounts, look-up by code) against the real service. Skipped without staging keys, and
whenever staging cannot be reached (CI has no internet). Nothing here moves money: a payin is
created and canceled unpaid, a payout is created uncommitted and canceled.
`OFFERHUB_AIRTM_BASE_URL` may point elsewhere (default: staging); `AIRTM_STAGING_PAYEE_EMAIL`
names a staging user a payout may be addressed to (the payout tests are skipped without it).
"""

import os
import uuid
from decimal import Decimal

import pytest
import requests

from payments.airtm import AirtmClient, AirtmError, PayinStatus, PayoutStatus

STAGING_API = "https://api.stg.enterprise.airtm.com/v2"
BASE_URL = os.environ.get("OFFERHUB_AIRTM_BASE_URL", "") or STAGING_API
API_KEY = os.environ.get("OFFERHUB_AIRTM_API_KEY", "")
API_SECRET = os.environ.get("OFFERHUB_AIRTM_API_SECRET", "")
PAYEE = os.environ.get("AIRTM_STAGING_PAYEE_EMAIL", "")

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not (API_KEY and API_SECRET) or "/sandbox/" in BASE_URL,
        reason="set OFFERHUB_AIRTM_API_KEY and OFFERHUB_AIRTM_API_SECRET (staging) to run the Airtm contract tests",
    ),
]


@pytest.fixture(scope="module")
def live_airtm() -> AirtmClient:
    try:
        requests.head(BASE_URL, timeout=5)
    except requests.RequestException:
        pytest.skip("Airtm's staging is unreachable from here")
    return AirtmClient(base_url=BASE_URL, api_key=API_KEY, api_secret=API_SECRET, timeout=30)


def unique_code(kind: str) -> str:
    return f"offerhub-contract-{kind}-{uuid.uuid4().hex[:16]}"


def test_a_wrong_secret_is_refused():
    client = AirtmClient(base_url=BASE_URL, api_key=API_KEY, api_secret="wrong", timeout=30, attempts=1)
    with pytest.raises(AirtmError) as refused:
        client.balance()
    assert refused.value.http_status in (401, 403)
    assert refused.value.code == "PROVIDER_UNAVAILABLE"


def test_me_and_the_balance_in_exact_dollars(live_airtm):
    assert live_airtm.me()
    balance = live_airtm.balance()
    assert isinstance(balance.available, Decimal) and isinstance(balance.pending, Decimal)


def test_payin_create_look_up_by_code_and_cancel(live_airtm):
    code = unique_code("payin")
    payin = live_airtm.payin_create(
        code=code,
        amount=Decimal("1.23"),
        description="OfferHub contract test",
        confirmation_uri="https://example.com/confirm",
        cancel_uri="https://example.com/cancel",
    )
    assert payin.id and payin.code == code and payin.amount == Decimal("1.23")
    assert payin.status is PayinStatus.AWAITING_USER_CONFIRMATION, payin.provider_status
    assert live_airtm.payin_by_code(code).id == payin.id
    assert live_airtm.payin_by_code(unique_code("none")) is None
    # Creating again under the same code answers 415029, which the client resolves to the same payin.
    again = live_airtm.payin_create(
        code=code,
        amount=Decimal("1.23"),
        description="OfferHub contract test",
        confirmation_uri="https://example.com/confirm",
        cancel_uri="https://example.com/cancel",
    )
    assert again.id == payin.id
    assert live_airtm.payin_cancel(payin.id).status is PayinStatus.CANCELED


def test_an_unknown_user_is_not_found(live_airtm):
    with pytest.raises(AirtmError) as missing:
        live_airtm.user_by_email(f"{uuid.uuid4().hex}@offerhub.invalid")
    assert missing.value.code == "AIRTM_USER_INVALID"


@pytest.mark.skipif(not PAYEE, reason="set AIRTM_STAGING_PAYEE_EMAIL to a staging user to run the payout tests")
def test_payout_create_uncommitted_look_up_and_cancel(live_airtm):
    assert live_airtm.user_by_email(PAYEE).id
    code = unique_code("payout")
    payout = live_airtm.payout_create(code=code, email=PAYEE, amount=Decimal("1.00"), notes="OfferHub contract test")
    assert payout.status is PayoutStatus.CREATED, payout.provider_status
    assert payout.amount == Decimal("1.00")
    assert live_airtm.payout_by_code(code).id == payout.id
    assert isinstance(live_airtm.payout_events(payout.id), list)
    assert live_airtm.payout_cancel(payout.id).status is PayoutStatus.CANCELED
