"""Bad input on the balance, wallet and withdrawal endpoints (API.md §5, §6, §11) is a 400 naming
the field, never a 5xx, and nothing is applied: NUL characters, unbounded or non-string text,
money that is not two ASCII decimals, ids over their column length, unknown fields."""

import itertools

import pytest

from offerhub.models import AuditLog, Event
from payments.balances import balance_snapshot
from payments.ledger import hold_reserve, ledger_account, ledger_transfer, user_accounts
from payments.models import Hold, JournalEntry, LedgerAccount, Withdrawal
from tests.factories import UserFactory

keys = (f"input-{n}" for n in itertools.count())
FULLWIDTH = "\uff11.\uff10\uff10"  # "1.00" in fullwidth digits
G_ADDRESS = "GAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCWN7"


def post(client, path, body):
    return client.post(f"/api/v1{path}", body, format="json", HTTP_IDEMPOTENCY_KEY=next(keys))


def refused_fields(response) -> set[str]:
    details = response.json()["error"]["details"]
    return {details.get("field")} | {item["field"] for item in details.get("fields", [])}


def state(*users) -> tuple:
    """Everything a refused request must leave as it was."""
    return (
        [(s.available, s.reserved) for s in (balance_snapshot(user=user) for user in users)],
        Hold.objects.count(),
        JournalEntry.objects.count(),
        AuditLog.objects.count(),
        Event.objects.count(),
        Withdrawal.objects.count(),
    )


@pytest.fixture
def support(auth_client):
    return auth_client(scopes=["read", "write", "support"])


@pytest.fixture
def buyer(db):
    """50.00 available and a 20.00 hold for ord_held, booked in the ledger (no chain needed)."""
    user = UserFactory()
    available, _ = user_accounts(user)
    ledger_transfer(
        idempotency_key=f"test-funding:{user.public_id}",
        kind="adjustment_credit",
        source=ledger_account(kind=LedgerAccount.Kind.ADJUSTMENTS),
        destination=available,
        amount=700_000_000,
    )
    hold_reserve(user=user, reference="ord_held", amount=200_000_000)
    return user


@pytest.fixture
def seller(db):
    return UserFactory()


BAD_MONEY = ["1e3", FULLWIDTH, "10.00\n", "922337203685.47", "1000000000.01", "-5.00", "1.5", 10, 10.0, None, ""]
HOLD_ACTIONS = ["reserve", "cancel-reservation", "deduct-reserved", "release"]
ALL_ACTIONS = [*HOLD_ACTIONS, "credit", "debit"]


def base_body(action: str, seller) -> dict:
    if action in ("credit", "debit"):
        return {"amount": "10.00", "description": "goodwill"}
    body = {"amount": "10.00", "orderId": "ord_held"}
    return body | {"sellerId": seller.public_id} if action == "release" else body


@pytest.mark.django_db
@pytest.mark.parametrize("action", ALL_ACTIONS)
@pytest.mark.parametrize("amount", BAD_MONEY)
def test_balance_amount_not_two_ascii_decimals_is_invalid_amount_format(support, buyer, seller, action, amount):
    before = state(buyer, seller)
    body = base_body(action, seller) | {"amount": amount}
    response = post(support, f"/users/{buyer.public_id}/balance/{action}", body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    expected = {"VALIDATION_ERROR", "INVALID_AMOUNT_FORMAT"} if amount in (None, "") else {"INVALID_AMOUNT_FORMAT"}
    assert error["code"] in expected and "amount" in refused_fields(response)
    assert state(buyer, seller) == before


LONG = "x" * 100_000
BAD_TEXT = [
    ("a\x00b", "NUL"),
    (LONG, "100,000 characters"),
    (5, "a number"),
    (["a"], "a list"),
    ({"a": 1}, "an object"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("action", ALL_ACTIONS)
@pytest.mark.parametrize(("value", "what"), BAD_TEXT)
def test_balance_description_must_be_bounded_text(support, buyer, seller, action, value, what):
    before = state(buyer, seller)
    response = post(
        support, f"/users/{buyer.public_id}/balance/{action}", base_body(action, seller) | {"description": value}
    )
    assert response.status_code == 400, (what, response.content)
    assert "description" in refused_fields(response)
    assert state(buyer, seller) == before


@pytest.mark.django_db
@pytest.mark.parametrize("action", HOLD_ACTIONS)
@pytest.mark.parametrize("name", ["orderId", "reference"])
@pytest.mark.parametrize("value", ["ord_\x00", "o" * 101, 123, True, ["ord_held"], None, ""])
def test_hold_reference_is_a_bounded_string(support, buyer, seller, action, name, value):
    before = state(buyer, seller)
    body = {k: v for k, v in base_body(action, seller).items() if k != "orderId"} | {name: value}
    response = post(support, f"/users/{buyer.public_id}/balance/{action}", body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert name in refused_fields(response) or (value in (None, "") and "orderId" in refused_fields(response))
    assert state(buyer, seller) == before


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["sellerId", "recipientId"])
@pytest.mark.parametrize("value", ["usr_\x00", "usr_" + "a" * 300, 42, ["usr_x"]])
def test_release_seller_must_be_an_id(support, buyer, name, value):
    before = state(buyer)
    body = {"amount": "10.00", "orderId": "ord_held", name: value}
    response = post(support, f"/users/{buyer.public_id}/balance/release", body)
    assert response.status_code == 400, response.content
    assert name in refused_fields(response)
    assert state(buyer) == before


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["credit", "debit"])
@pytest.mark.parametrize("value", ["ref\x00", "r" * 256, 7])
def test_adjustment_reference_is_bounded_text(support, buyer, action, value):
    before = state(buyer)
    response = post(
        support, f"/users/{buyer.public_id}/balance/{action}", base_body(action, None) | {"reference": value}
    )
    assert response.status_code == 400, response.content
    assert "reference" in refused_fields(response)
    assert state(buyer) == before


@pytest.mark.django_db
@pytest.mark.parametrize("action", ALL_ACTIONS)
@pytest.mark.parametrize(
    ("extra", "code", "field"),
    [
        ({"colour": "red"}, "VALIDATION_ERROR", "colour"),
        ({"currency": "EUR"}, "INVALID_CURRENCY", "currency"),
        ({"currency": "US\x00D"}, "INVALID_CURRENCY", "currency"),
        ({"currency": 1}, "INVALID_CURRENCY", "currency"),
    ],
)
def test_balance_unknown_fields_and_currency(support, buyer, seller, action, extra, code, field):
    before = state(buyer, seller)
    response = post(support, f"/users/{buyer.public_id}/balance/{action}", base_body(action, seller) | extra)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == code and field in refused_fields(response)
    assert state(buyer, seller) == before


@pytest.mark.django_db
@pytest.mark.parametrize("action", [*ALL_ACTIONS, "sync"])
def test_balance_bodies_must_be_json_objects(support, buyer, seller, action):
    before = state(buyer, seller)
    path = f"/api/v1/users/{buyer.public_id}/balance/{action}"
    form = support.post(path, {"amount": "10.00", "orderId": "ord_held"}, HTTP_IDEMPOTENCY_KEY=next(keys))
    assert form.status_code == 415 and form.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    listed = support.post(path, ["amount"], format="json", HTTP_IDEMPOTENCY_KEY=next(keys))
    assert listed.status_code == 400 and "body" in refused_fields(listed)
    assert state(buyer, seller) == before


@pytest.mark.django_db
def test_sync_refuses_unknown_fields(support, buyer):
    response = post(support, f"/users/{buyer.public_id}/balance/sync", {"force": True})
    assert response.status_code == 400 and "force" in refused_fields(response)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("user_id", "statuses"),
    [("usr_%00", {400}), ("usr_" + "a" * 300, {400, 404}), ("usr_" + "a" * 100, {404}), ("%F0%9F%92%B0", {404})],
)
@pytest.mark.parametrize("suffix", ["", "/verify", "/sync", "/reserve", "/credit"])
def test_bad_user_ids_in_the_path_are_4xx(support, user_id, statuses, suffix):
    path = f"/api/v1/users/{user_id}/balance{suffix}"
    if suffix in ("", "/verify"):
        response = support.get(path)
    else:
        body = {"/sync": {}, "/reserve": {"amount": "1.00", "orderId": "o"}}.get(suffix, base_body("credit", None))
        response = support.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=next(keys))
    assert response.status_code in statuses, response.content


# --- Wallet -------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"cursor": "garbage"}, "cursor"),
        ({"cursor": "99999999999999999999999"}, "cursor"),
        ({"cursor": "-1"}, "cursor"),
        ({"cursor": "1\x00"}, "cursor"),
        ({"limit": "abc"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1e3"}, "limit"),
    ],
)
def test_wallet_transactions_query_is_validated(chain, funded_user, support, query, field):
    user = funded_user("0")
    response = support.get(f"/api/v1/users/{user.public_id}/wallet/transactions", query)
    assert response.status_code == 400, response.content
    assert field in refused_fields(response)


@pytest.mark.django_db(transaction=True)
def test_wallet_transactions_page_by_their_cursor(chain, funded_user, support):
    user = funded_user("3.00")
    chain.mint(user.wallet.public_key, "4.00")
    path = f"/api/v1/users/{user.public_id}/wallet/transactions"
    first = support.get(path, {"limit": 1}).json()
    assert first["hasMore"] is True and first["data"][0]["amount"] == "4.0000000"
    second = support.get(path, {"limit": 1, "cursor": first["nextCursor"]}).json()
    assert second["data"][0]["amount"] == "3.0000000"


# --- Withdrawals --------------------------------------------------------------------------------


def withdrawal_body(user, **changes) -> dict:
    body = {"userId": user.public_id, "amount": "10.00", "destinationType": "crypto", "destinationRef": G_ADDRESS}
    return {k: v for k, v in (body | changes).items() if v is not ...}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"userId": "usr_\x00"}, "userId"),
        ({"userId": 123}, "userId"),
        ({"userId": "usr_" + "a" * 300}, "userId"),
        ({"userId": ...}, "userId"),
        ({"amount": "1e3"}, "amount"),
        ({"amount": FULLWIDTH}, "amount"),
        ({"amount": "10.00\n"}, "amount"),
        ({"amount": "922337203685.47"}, "amount"),
        ({"amount": 10}, "amount"),
        ({"destinationType": "paypal"}, "destinationType"),
        ({"destinationType": 1}, "destinationType"),
        ({"destinationRef": "G\x00"}, "destinationRef"),
        ({"destinationRef": "G" * 300}, "destinationRef"),
        ({"destinationRef": 5}, "destinationRef"),
        ({"destinationRef": ...}, "destinationRef"),
        ({"description": "d\x00"}, "description"),
        ({"description": LONG}, "description"),
        ({"description": "d" * 256}, "description"),
        ({"description": 5}, "description"),
        ({"memo": "m\x00"}, "memo"),
        ({"memo": "m" * 29}, "memo"),
        ({"memo": 5}, "memo"),
        ({"commit": "maybe"}, "commit"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_withdrawal_input_is_validated_before_anything_moves(support, buyer, changes, field):
    before = state(buyer)
    response = post(support, "/withdrawals", withdrawal_body(buyer, **changes))
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert field in refused_fields(response)
    assert state(buyer) == before


@pytest.mark.django_db
def test_withdrawal_currency_other_than_usd(support, buyer):
    response = post(support, "/withdrawals", withdrawal_body(buyer, currency="EUR"))
    assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_CURRENCY"


@pytest.mark.django_db
def test_withdrawal_body_must_be_json(support, buyer):
    response = support.post("/api/v1/withdrawals", withdrawal_body(buyer), HTTP_IDEMPOTENCY_KEY=next(keys))
    assert response.status_code == 415


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "statuses"),
    [
        ({"userId": "usr_\x00"}, {400}),
        ({"userId": "usr_" + "a" * 300}, {400}),
        ({"userId": "usr_nobody"}, {404}),
        ({"limit": "x"}, {400}),
        ({"cursor": "wd_\x00"}, {400}),
        ({"cursor": "wd_" + "a" * 300}, {400}),
        ({"cursor": "wd_nope"}, {200}),
    ],
)
def test_withdrawal_list_query_is_validated(support, query, statuses):
    response = support.get("/api/v1/withdrawals", query)
    assert response.status_code in statuses, response.content
    if response.status_code == 400:
        assert set(query) & refused_fields(response)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("withdrawal_id", "query", "statuses"),
    [
        ("wd_%00", {}, {400}),
        ("wd_" + "a" * 300, {}, {400, 404}),
        ("wd_" + "a" * 100, {}, {404}),
        ("wd_nope", {"userId": "usr_\x00"}, {400}),
        ("wd_nope", {"userId": "usr_" + "a" * 300}, {400, 404}),
    ],
)
@pytest.mark.parametrize("action", ["", "/refresh", "/commit"])
def test_withdrawal_ids_and_user_filter_are_4xx(support, withdrawal_id, query, statuses, action):
    path = f"/api/v1/withdrawals/{withdrawal_id}{action}"
    if action:
        suffix = "?" + "&".join(f"userId={v.replace(chr(0), '%00')}" for v in query.values()) if query else ""
        response = support.post(path + suffix, {}, format="json", HTTP_IDEMPOTENCY_KEY=next(keys))
    else:
        response = support.get(path, query)
    assert response.status_code in statuses, response.content


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["refresh", "commit"])
def test_withdrawal_actions_refuse_unknown_fields(support, buyer, action):
    withdrawal = Withdrawal.objects.create(
        user=buyer, amount=10_000_000, destination_type="crypto", destination_ref=G_ADDRESS
    )
    response = post(support, f"/withdrawals/{withdrawal.public_id}/{action}", {"force": True})
    assert response.status_code == 400 and "force" in refused_fields(response)
