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
    assert caplog.text.count("Redis unavailable") == 1  # not tried again on every request while down


# --- over HTTP, against the sandbox Airtm ------------------------------------------------

http = pytest.mark.django_db(transaction=True)


def payin_args(code: str, amount: str = "50.00") -> dict:
    return {
        "code": code,
        "amount": Decimal(amount),
        "description": "Add funds",
        "confirmation_uri": "https://offerhub.example/topups/1/callback?status=ok",
        "cancel_uri": "https://offerhub.example/topups/1/callback?status=cancel",
    }


@pytest.fixture
def recipient():
    from sandbox.airtm_engine import airtm_user_create

    return airtm_user_create(email="payee@airtm.sandbox", first_name="Pia")


def sandbox_payins(code: str) -> int:
    from sandbox.models import SandboxAirtmPayin

    return SandboxAirtmPayin.objects.filter(code=code).count()


def sandbox_payouts(code: str) -> int:
    from sandbox.models import SandboxAirtmPayout

    return SandboxAirtmPayout.objects.filter(code=code).count()


def fault(**fields):
    from sandbox.models import SandboxFault

    return SandboxFault.objects.create(service="airtm", **fields)


def faults_left() -> int:
    from sandbox.models import SandboxFault

    return sum(SandboxFault.objects.filter(remaining__gt=0).values_list("remaining", flat=True))


def airtm_requests(caplog) -> list[str]:
    """The requests our client sent, in order ("POST /payins", "GET /payins/by-code/x"), from its log."""
    sent = []
    for record in caplog.records:
        words = record.getMessage().split()
        if record.name == "payments.airtm" and words[:1] == ["Airtm"] and words[1] in ("GET", "POST", "DELETE"):
            sent.append(f"{words[1]} {words[2].rstrip(':')}")
    return sent


@http
def test_payin_create_get_by_code_and_cancel(airtm):
    payin = airtm.payin_create(**payin_args("top-1", "49.99"))
    assert payin.status is PayinStatus.AWAITING_USER_CONFIRMATION and payin.provider_status == "CREATED"
    assert payin.amount == Decimal("49.99") and payin.code == "top-1"
    assert payin.checkout_url.endswith(f"/sandbox/airtm/checkout/{payin.id}")
    assert airtm.payin_get(payin.id) == payin
    assert airtm.payin_by_code("top-1") == payin
    assert airtm.payin_by_code("top-none") is None
    canceled = airtm.payin_cancel(payin.id)
    assert canceled.status is PayinStatus.CANCELED
    assert airtm.payin_cancel(payin.id).status is PayinStatus.CANCELED  # again: the same answer, no error


@http
def test_a_paid_payin_reads_as_succeeded_and_cannot_be_canceled(airtm):
    from sandbox.airtm_engine import airtm_payin_settle

    payin = airtm.payin_create(**payin_args("top-paid"))
    airtm_payin_settle(airtm_id=payin.id, outcome="pay")
    assert airtm.payin_get(payin.id).status is PayinStatus.SUCCEEDED
    with pytest.raises(AirtmError) as refused:
        airtm.payin_cancel(payin.id)
    assert refused.value.code == "INVALID_STATE" and refused.value.reason_code == "415055"


@http
def test_a_repeated_payin_create_returns_the_same_payin_and_a_different_amount_is_a_conflict(airtm):
    first = airtm.payin_create(**payin_args("top-again"))
    assert airtm.payin_create(**payin_args("top-again")) == first  # 415029 resolved by the look-up
    with pytest.raises(AirtmError) as conflict:
        airtm.payin_create(**payin_args("top-again", "60.00"))
    assert conflict.value.code == "AIRTM_CODE_CONFLICT" and conflict.value.status == 409
    assert sandbox_payins("top-again") == 1


@http
@pytest.mark.parametrize(
    "lost",
    [
        {"timeout": True, "timeout_seconds": 1.5, "after_processing": True},  # created, the answer never came
        {"status_code": 502, "after_processing": True},  # created, then the answer was lost
        {"status_code": 503},  # refused before anything: the look-up finds nothing, it is sent again
        {"status_code": 429},
    ],
    ids=["timeout-after", "5xx-after", "5xx-before", "429"],
)
def test_a_lost_answer_at_payin_creation_makes_exactly_one_payin(airtm, lost, caplog):
    from payments.airtm import AirtmClient

    fault(method="POST", path_contains="/payins", remaining=1, **lost)
    client = AirtmClient(timeout=0.7, backoff=0.01)
    with caplog.at_level(logging.INFO, logger="payments.airtm"):
        payin = client.payin_create(**payin_args("top-lost", "25.50"))
    sent = airtm_requests(caplog)
    # The code is looked up before anything is sent again; sent again only when Airtm has nothing.
    assert sent[:2] == ["POST /payins", "GET /payins/by-code/top-lost"]
    assert sent[2:] == ([] if lost.get("after_processing") else ["POST /payins"])
    assert payin.code == "top-lost" and payin.amount == Decimal("25.50")
    assert sandbox_payins("top-lost") == 1
    assert faults_left() == 0
    assert client.payin_by_code("top-lost").id == payin.id


@http
def test_when_even_the_look_up_fails_the_outcome_is_reported_unknown(airtm):
    from payments.airtm import AirtmClient

    fault(method="POST", path_contains="/payins", status_code=502, after_processing=True, remaining=1)
    fault(method="GET", path_contains="/by-code/", status_code=503)  # every look-up fails
    client = AirtmClient(backoff=0.01, attempts=2)
    with pytest.raises(AirtmError) as unknown:
        client.payin_create(**payin_args("top-unknown"))
    assert unknown.value.outcome_unknown  # the caller must keep its hold and settle by code later
    assert unknown.value.code == "PROVIDER_ERROR"
    assert sandbox_payins("top-unknown") == 1  # it was created, and not twice


@http
def test_payout_create_commit_events_and_cancel(airtm, recipient):
    payout = airtm.payout_create(code="wd-1", email="Payee@airtm.sandbox", amount=Decimal("30.10"), notes="Withdrawal")
    assert payout.status is PayoutStatus.CREATED and payout.amount == Decimal("30.10")
    assert payout.airtm_user_email == "payee@airtm.sandbox" and payout.airtm_user_id == recipient.airtm_id
    assert airtm.payout_by_code("wd-1") == payout and airtm.payout_by_code("wd-none") is None
    committed = airtm.payout_commit(payout.id)
    assert committed.status is PayoutStatus.COMMITTED
    assert airtm.payout_commit(payout.id).status is PayoutStatus.COMMITTED  # already done: no error
    assert [event.status for event in airtm.payout_events(payout.id)][-1] is PayoutStatus.COMMITTED

    other = airtm.payout_create(code="wd-2", email=recipient.email, amount=Decimal("5"), notes="n")
    assert airtm.payout_cancel(other.id).status is PayoutStatus.CANCELED
    assert airtm.payout_get(other.id).status is PayoutStatus.CANCELED


@http
def test_payout_created_and_committed_in_one_call(airtm, recipient):
    payout = airtm.payout_create(code="wd-now", email=recipient.email, amount=Decimal("12.00"), notes="n", commit=True)
    assert payout.status is PayoutStatus.COMMITTED
    available = airtm.balance()
    assert available.pending == Decimal("12.00") and isinstance(available.available, Decimal)


@http
@pytest.mark.parametrize(
    "lost",
    [
        {"timeout": True, "timeout_seconds": 1.5, "after_processing": True},
        {"status_code": 500, "after_processing": True},
        {"status_code": 503},
        {"status_code": 429},
    ],
    ids=["timeout-after", "5xx-after", "5xx-before", "429"],
)
def test_a_lost_answer_at_payout_creation_makes_exactly_one_payout(airtm, recipient, lost, caplog):
    from payments.airtm import AirtmClient

    fault(method="POST", path_contains="/payouts", remaining=1, **lost)
    client = AirtmClient(timeout=0.7, backoff=0.01)
    with caplog.at_level(logging.INFO, logger="payments.airtm"):
        payout = client.payout_create(
            code="wd-lost", email=recipient.email, amount=Decimal("40.00"), notes="n", commit=True
        )
    sent = airtm_requests(caplog)
    assert sent[:2] == ["POST /payouts", "GET /payouts/by-code/wd-lost"]
    assert sent[2:] == ([] if lost.get("after_processing") else ["POST /payouts"])
    assert payout.status is PayoutStatus.COMMITTED and payout.amount == Decimal("40.00")
    assert sandbox_payouts("wd-lost") == 1
    assert faults_left() == 0


@http
def test_a_payout_found_uncommitted_after_a_lost_answer_is_committed(airtm, recipient):
    from payments.airtm import AirtmClient

    # The create without commit went through, its answer was lost; the caller asked for commit.
    airtm.payout_create(code="wd-half", email=recipient.email, amount=Decimal("8.00"), notes="n")
    client = AirtmClient(backoff=0.01)
    payout = client.payout_create(code="wd-half", email=recipient.email, amount=Decimal("8.00"), notes="n", commit=True)
    assert payout.status is PayoutStatus.COMMITTED and sandbox_payouts("wd-half") == 1


@http
def test_a_lost_answer_at_commit_is_resolved_by_reading_the_payout(airtm, recipient):
    payout = airtm.payout_create(code="wd-commit", email=recipient.email, amount=Decimal("9.00"), notes="n")
    fault(method="POST", path_contains="/commit", status_code=502, after_processing=True, remaining=1)
    assert airtm.payout_commit(payout.id).status is PayoutStatus.COMMITTED
    assert faults_left() == 0


@http
def test_payout_reason_codes_become_our_errors(airtm, recipient):
    from sandbox.airtm_engine import airtm_user_create

    airtm_user_create(email="gone@airtm.sandbox", status="inactive")
    cases = [
        ({"email": "nobody@airtm.sandbox"}, "AIRTM_USER_INVALID", "415059"),
        ({"email": "gone@airtm.sandbox"}, "WITHDRAWAL_DESTINATION_INVALID", "415060"),
        ({"amount": Decimal("9999999.00"), "commit": True}, "AIRTM_INSUFFICIENT_BALANCE", "415016"),
    ]
    for number, (changes, code, reason) in enumerate(cases):
        args = {"code": f"wd-r{number}", "email": recipient.email, "amount": Decimal("1.00"), "notes": "n", **changes}
        with pytest.raises(AirtmError) as refused:
            airtm.payout_create(**args)
        assert (refused.value.code, refused.value.reason_code) == (code, reason)
        assert not refused.value.outcome_unknown
        assert sandbox_payouts(f"wd-r{number}") == 0
    with pytest.raises(AirtmError) as refused:
        airtm.payout_create(code="wd-r0", email=recipient.email, amount=Decimal("1.00"), notes="n")
        airtm.payout_create(code="wd-r0", email=recipient.email, amount=Decimal("2.00"), notes="n")
    assert refused.value.code == "AIRTM_CODE_CONFLICT"  # 415056 with other terms
    committed = airtm.payout_create(code="wd-c", email=recipient.email, amount=Decimal("1.00"), notes="n", commit=True)
    with pytest.raises(AirtmError) as refused:
        airtm.payout_cancel(committed.id)
    assert (refused.value.code, refused.value.reason_code) == ("INVALID_STATE", "415055")


@http
def test_a_wrong_secret_is_an_operator_problem(airtm, caplog):
    from payments.airtm import AirtmClient

    wrong = AirtmClient(api_secret="not-the-secret", backoff=0.01)
    with caplog.at_level(logging.DEBUG), pytest.raises(AirtmError) as refused:
        wrong.balance()
    assert "Airtm GET /me/balance -> 401" in caplog.text
    assert "not-the-secret" not in caplog.text and "Basic " not in caplog.text  # no credentials in logs
    assert refused.value.code == "PROVIDER_UNAVAILABLE" and refused.value.http_status == 401
    assert refused.value.reason_code == "415904"
    assert "not-the-secret" not in str(refused.value.details)


@http
def test_429_is_waited_out_and_retried(airtm):
    payin = airtm.payin_create(**payin_args("top-429"))
    fault(method="GET", path_contains="/payins/", status_code=429, remaining=2)
    started = time.monotonic()
    assert airtm.payin_get(payin.id).id == payin.id
    assert time.monotonic() - started >= 2  # Retry-After: 1, twice
    assert faults_left() == 0


@http
def test_429_beyond_the_retries_is_rate_limited(airtm):
    from payments.airtm import AirtmClient

    fault(method="GET", path_contains="/me", status_code=429)
    with pytest.raises(AirtmError) as refused:
        AirtmClient(attempts=2, backoff=0.01).me()
    assert refused.value.code == "PROVIDER_RATE_LIMITED"


@http
def test_a_status_we_do_not_know_is_read_as_unknown(airtm, recipient, caplog):
    from sandbox.models import SandboxAirtmPayin, SandboxAirtmPayout

    payout = airtm.payout_create(code="wd-odd", email=recipient.email, amount=Decimal("3.00"), notes="n")
    payin = airtm.payin_create(**payin_args("top-odd"))
    SandboxAirtmPayout.objects.filter(airtm_id=payout.id).update(status="ON_HOLD")
    SandboxAirtmPayin.objects.filter(airtm_id=payin.id).update(status="REVIEW")
    with caplog.at_level(logging.WARNING, logger="payments.airtm"):
        assert airtm.payout_get(payout.id).status is PayoutStatus.UNKNOWN
        assert airtm.payout_get(payout.id).provider_status == "ON_HOLD"
        assert airtm.payin_by_code("top-odd").status is PayinStatus.UNKNOWN
    assert "ON_HOLD" in caplog.text and "REVIEW" in caplog.text


@http
def test_user_lookup_me_and_balance(airtm, recipient, caplog):
    with caplog.at_level(logging.INFO, logger="payments.airtm"):
        user = airtm.user_by_email("PAYEE@airtm.sandbox")
    assert (user.id, user.email, user.first_name, user.active, user.is_verified) == (
        recipient.airtm_id,
        "payee@airtm.sandbox",
        "Pia",
        True,
        True,
    )
    assert "payee@airtm.sandbox" not in caplog.text.lower()  # e-mails are masked in our logs
    with pytest.raises(AirtmError) as missing:
        airtm.user_by_email("nobody@airtm.sandbox")
    assert missing.value.code == "AIRTM_USER_INVALID" and missing.value.details["reason"] == "USER_NOT_FOUND"
    assert airtm.me()["id"]
    balance = airtm.balance()
    assert balance.available == Decimal(django_settings.SANDBOX_AIRTM_OPENING_BALANCE) and balance.pending == 0


@http
def test_a_timeout_on_a_read_is_reported_as_such(airtm):
    from payments.airtm import AirtmClient

    fault(method="GET", path_contains="/me", timeout=True, timeout_seconds=1.0)
    with pytest.raises(AirtmError) as slow:
        AirtmClient(timeout=0.3, attempts=2, backoff=0.01).me()
    assert slow.value.code == "PROVIDER_TIMEOUT" and slow.value.status == 504


@http
def test_answers_lost_on_every_attempt_leave_the_outcome_unknown(airtm, recipient):
    from payments.airtm import AirtmClient

    fault(method="POST", path_contains="/payouts", status_code=504)  # a gateway: the backend may still run
    client = AirtmClient(attempts=2, backoff=0.01)
    with pytest.raises(AirtmError) as unknown:
        client.payout_create(code="wd-never", email=recipient.email, amount=Decimal("1.00"), notes="n")
    assert unknown.value.outcome_unknown and unknown.value.code == "PROVIDER_ERROR"
    assert sandbox_payouts("wd-never") == 0


@http
def test_the_client_keeps_to_airtms_rate_across_processes(airtm, caplog):
    from payments.airtm import AirtmClient

    # Two clients with the same key stand for two worker processes: their requests share one limit.
    workers = [airtm, AirtmClient(backoff=0.01)]
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="payments.airtm"):
        for number in range(25):
            assert workers[number % 2].balance().pending == 0
    assert time.monotonic() - started >= 2.0  # 25 requests at 10 a second
    assert len(airtm_requests(caplog)) == 25 and "-> 429" not in caplog.text  # Airtm never had to refuse one


@http
def test_a_payout_may_require_a_verified_recipient(airtm):
    from sandbox.airtm_engine import airtm_user_create

    airtm_user_create(email="unverified@airtm.sandbox", is_verified=False)
    args = {"email": "unverified@airtm.sandbox", "amount": Decimal("2.00"), "notes": "n"}
    with pytest.raises(AirtmError) as refused:
        airtm.payout_create(code="wd-verified", require_id_verified=True, **args)
    assert refused.value.reason_code == "415060"
    assert airtm.payout_create(code="wd-any", **args).status is PayoutStatus.CREATED
