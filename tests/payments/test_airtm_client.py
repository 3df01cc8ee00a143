"""OfferHub's Airtm client (payments.airtm): amounts, statuses, reason codes, the rate limit,
and (over HTTP, against the sandbox Airtm the live server serves) every operation, dedup by
code and look-up before any retry."""

import json
import logging
import time
from decimal import Decimal

import pytest
import redis
from django.conf import settings as django_settings

from offerhub.errors import STATUS_BY_CODE, ServiceError
from payments.airtm import (
    REASON_CODES,
    AirtmError,
    PayinStatus,
    PayoutStatus,
    RateLimiter,
    amount_from_airtm,
    amount_to_airtm,
    decode_body,
    encode_body,
    payin_status,
    payout_status,
)

# --- amounts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "written"),
    [
        (Decimal("10.5"), "10.50"),
        (Decimal("0.1"), "0.10"),
        (Decimal("100"), "100.00"),
        ("19.99", "19.99"),
        (7, "7.00"),
        (Decimal("1000000000.00"), "1000000000.00"),
    ],
)
def test_amounts_go_out_as_exact_json_numbers(given, written):
    amount = amount_to_airtm(given)
    assert amount == Decimal(written)
    body = encode_body({"amount": amount, "items": [{"amount": amount, "quantity": 1}]})
    written_out = json.loads(body, parse_float=str, parse_int=str)["amount"]
    assert Decimal(written_out) == Decimal(written) and "e" not in written_out.lower()
    assert '"amount": "' not in body  # a number, not a string
    assert decode_body(body)["amount"] == Decimal(written)


def test_sums_that_floats_get_wrong_stay_exact():
    total = amount_to_airtm(Decimal("0.10")) + amount_to_airtm(Decimal("0.20"))
    assert encode_body({"amount": total}) == '{"amount": 0.3}'  # float: 0.30000000000000004


@pytest.mark.parametrize("bad", [Decimal("10.001"), Decimal("0"), Decimal("-5"), 1.5, "abc", Decimal("NaN"), True])
def test_amounts_airtm_cannot_take_are_refused_before_sending(bad):
    with pytest.raises(ServiceError) as refused:
        amount_to_airtm(bad)
    assert refused.value.code == "INVALID_AMOUNT"


def test_answers_are_read_into_exact_decimals():
    data = decode_body(b'{"amount": 49.99, "fee": 0.1, "whole": 50, "gross": "12.34"}')
    assert amount_from_airtm(data["amount"]) == Decimal("49.99")
    assert str(amount_from_airtm(data["fee"])) == "0.1"
    assert amount_from_airtm(data["whole"]) == Decimal(50)
    assert amount_from_airtm(data["gross"]) == Decimal("12.34")
    assert amount_from_airtm(None) is None
    with pytest.raises(AirtmError):
        amount_from_airtm(49.99)  # a float means someone parsed without parse_float=Decimal


# --- statuses and reason codes ----------------------------------------------------------


@pytest.mark.parametrize(
    ("airtm", "ours"),
    [
        ("CREATED", PayinStatus.AWAITING_USER_CONFIRMATION),
        ("PROCESSING", PayinStatus.PROCESSING),
        ("CONFIRMED", PayinStatus.SUCCEEDED),
        ("CANCELED", PayinStatus.CANCELED),
        ("FAILED", PayinStatus.FAILED),
        ("BRIDGE_FAILED", PayinStatus.FAILED),
        ("BRIDGE_CANCELED", PayinStatus.FAILED),
    ],
)
def test_payin_statuses_map_to_top_up_states(airtm, ours):
    assert payin_status(airtm) is ours


@pytest.mark.parametrize(
    ("airtm", "ours"),
    [
        ("CREATED", PayoutStatus.CREATED),
        ("COMMITTED", PayoutStatus.COMMITTED),
        ("PENDING", PayoutStatus.PENDING),
        ("PROCESSING", PayoutStatus.PENDING),
        ("PENDING_USER_ACTION", PayoutStatus.PENDING_USER_ACTION),
        ("COMPLETED", PayoutStatus.COMPLETED),
        ("CANCELED", PayoutStatus.CANCELED),
        ("FAILED", PayoutStatus.FAILED),
        ("ERROR", PayoutStatus.UNKNOWN),  # temporary at Airtm: nothing to record yet
    ],
)
def test_payout_statuses_map_to_withdrawal_states(airtm, ours):
    from payments.models import Withdrawal

    assert payout_status(airtm) is ours
    if ours is not PayoutStatus.UNKNOWN:
        assert ours.value in Withdrawal.Status.values


@pytest.mark.parametrize("odd", ["ON_HOLD", "", None, 7, "confirmed-ish"])
def test_an_unknown_status_is_kept_unknown_and_logged_never_raised(odd, caplog):
    with caplog.at_level(logging.WARNING, logger="payments.airtm"):
        assert payin_status(odd) is PayinStatus.UNKNOWN
        assert payout_status(odd) is PayoutStatus.UNKNOWN
    assert "unknown to us" in caplog.text
    assert not PayoutStatus.UNKNOWN.terminal


@pytest.mark.parametrize(
    ("reason", "code", "http"),
    [
        ("415016", "AIRTM_INSUFFICIENT_BALANCE", 503),
        ("415056", "AIRTM_CODE_CONFLICT", 409),
        ("415029", "AIRTM_CODE_CONFLICT", 409),
        ("415059", "AIRTM_USER_INVALID", 422),
        ("415060", "WITHDRAWAL_DESTINATION_INVALID", 422),
        ("415055", "INVALID_STATE", 409),
        ("415904", "PROVIDER_UNAVAILABLE", 503),
    ],
)
def test_reason_codes_become_our_error_codes(reason, code, http):
    assert REASON_CODES[reason][0] == code
    assert STATUS_BY_CODE[code] == http
    error = AirtmError(code, "x", http_status=400, reason_code=reason)
    assert error.status == http and error.http_status == 400
    assert error.details["providerCode"] == reason


# --- the rate limit ---------------------------------------------------------------------


def _limiter_key(name: str) -> str:
    return f"offerhub:test:airtm-rate:{name}:{time.time_ns()}"


def test_the_rate_limit_is_shared_through_redis():
    if not django_settings.REDIS_URL:
        pytest.skip("needs REDIS_URL")
    key = _limiter_key("shared")
    # Two limiters stand for two processes: together they may send 10 in a second, not 20.
    first = RateLimiter(key=key, limit=10)
    second = RateLimiter(key=key, limit=10)
    allowed = [limiter._try() == 0 for limiter in (first, second) * 10]
    assert allowed.count(True) == 10
    waits = [second._try() for _ in range(3)]
    assert all(0 < wait <= 1 for wait in waits)
    assert redis.Redis.from_url(django_settings.REDIS_URL).zcard(key) == 10


def test_acquire_waits_for_the_window_instead_of_exceeding_it():
    key = _limiter_key("wait")
    limiter = RateLimiter(key=key, limit=5, window=0.5)
    started = time.monotonic()
    for _ in range(11):
        limiter.acquire()
    assert time.monotonic() - started >= 1.0  # 11 requests at 5 per 0.5 s need two full windows


def test_without_redis_the_limit_holds_in_this_process():
    limiter = RateLimiter(key=_limiter_key("local"), limit=3, redis_url="")
    assert [limiter._try() == 0 for _ in range(4)] == [True, True, True, False]


def test_an_unreachable_redis_falls_back_to_this_process(caplog):
    limiter = RateLimiter(key=_limiter_key("down"), limit=2, redis_url="redis://127.0.0.1:1/0")
    with caplog.at_level(logging.WARNING, logger="payments.airtm"):
        assert [limiter._try() == 0 for _ in range(3)] == [True, True, False]
    assert "Redis unavailable" in caplog.text
