"""Users, balance, wallet and withdrawal endpoints (API.md §4-§6, §11) over the sandbox chain."""

import itertools

import pytest

from offerhub.models import AuditLog, Event
from payments.models import ReconciliationReport, Withdrawal

pytestmark = pytest.mark.django_db(transaction=True)
keys = (f"idem-{n}" for n in itertools.count())


def post(client, path, body=None):
    return client.post(f"/api/v1{path}", body or {}, format="json", HTTP_IDEMPOTENCY_KEY=next(keys))


@pytest.fixture
def writer(auth_client):
    return auth_client(scopes=["read", "write"])


@pytest.fixture
def support(auth_client):
    return auth_client(scopes=["read", "write", "support"])


def create_user(client, external_id="shop-user-1", **extra):
    response = post(client, "/users", {"externalUserId": external_id, **extra})
    assert response.status_code in (200, 201), response.content
    return response.json()["data"]


def test_users_are_created_once_per_external_id_with_a_wallet(chain, writer):
    first = post(writer, "/users", {"externalUserId": "ext-1", "email": "Ext@Example.test", "type": "seller"})
    assert first.status_code == 201
    user = first.json()["data"]
    assert user["id"].startswith("usr_") and user["type"] == "SELLER" and user["email"] == "ext@example.test"
    assert user["balance"] == {"available": "0.00", "reserved": "0.00", "currency": "USD"}
    again = post(writer, "/users", {"external_user_id": "ext-1"})
    assert again.status_code == 200 and again.json()["data"]["id"] == user["id"]
    assert Event.objects.filter(type="user.created").count() == 1
    wallet = writer.get(f"/api/v1/users/{user['id']}/wallet").json()["data"]
    assert wallet["type"] == "INVISIBLE" and wallet["provider"] == "STELLAR" and wallet["publicKey"].startswith("G")
    assert wallet["balance"] == {"usdc": "0.0000000", "xlm": "0.0000000"}
    assert writer.get(f"/api/v1/users/{user['id']}").json()["data"]["id"] == user["id"]
    listed = writer.get("/api/v1/users", {"externalUserId": "ext-1"}).json()["data"]
    assert [u["id"] for u in listed] == [user["id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "externalUserId"),
        ({"externalUserId": "x", "email": "nope"}, "email"),
        ({"externalUserId": "x", "type": "ADMIN"}, "type"),
        ({"externalUserId": "x", "colour": "red"}, "colour"),
    ],
)
def test_user_validation_names_the_field(writer, body, field):
    response = post(writer, "/users", body)
    assert response.status_code == 400
    assert field in {f["field"] for f in response.json()["error"]["details"]["fields"]}


def test_unknown_user_is_404_everywhere(writer):
    for path in ("/users/usr_nope", "/users/usr_nope/balance", "/users/usr_nope/wallet"):
        response = writer.get(f"/api/v1{path}")
        assert response.status_code == 404 and response.json()["error"]["code"] == "USER_NOT_FOUND"


def test_deposit_details_and_transactions(chain, writer):
    from payments.deposits import deposits_sync

    user = create_user(writer)
    deposit = writer.get(f"/api/v1/users/{user['id']}/wallet/deposit").json()["data"]
    assert deposit["provider"] == "crypto" and deposit["method"] == "stellar_address"
    assert deposit["asset"]["code"] == "USDC" and deposit["network"] == "testnet"
    chain.mint(deposit["address"], "42.5")
    deposits_sync()
    balance = writer.get(f"/api/v1/users/{user['id']}/balance").json()
    assert balance["data"]["available"] == balance["available"] == "42.50"  # envelope + top-level mirror
    assert balance["total"] == "42.50" and balance["user_id"] == user["id"]
    history = writer.get(f"/api/v1/users/{user['id']}/wallet/transactions", {"limit": 5}).json()["data"]
    assert history[0]["type"] == "payment" and history[0]["amount"] == "42.5000000"
    assert history[0]["asset"].startswith("USDC:")


def test_reserve_cancel_and_their_errors(chain, writer, funded_user):
    user = funded_user("50.00")
    path = f"/users/{user.public_id}/balance"
    reserved = post(writer, f"{path}/reserve", {"amount": "20.00", "orderId": "ord_x_1"})
    assert reserved.status_code == 200
    body = reserved.json()
    assert body["operation"] == "RESERVE" and body["available"] == "30.00" and body["reserved"] == "20.00"
    assert body["previousBalance"] == {"available": "50.00", "reserved": "0.00"}
    assert AuditLog.objects.filter(public_id=body["auditLogId"]).exists()
    again = post(writer, f"{path}/reserve", {"amount": "1.00", "reference": "ord_x_1"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "FUNDS_ALREADY_RESERVED"
    too_much = post(writer, f"{path}/reserve", {"amount": "30.01", "orderId": "ord_x_2"})
    assert too_much.status_code == 422 and too_much.json()["error"]["details"]["available"] == "30.00"
    bad = post(writer, f"{path}/reserve", {"amount": "-50.00", "orderId": "ord_x_3"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_AMOUNT_FORMAT"
    assert post(writer, f"{path}/reserve", {"amount": "1.5", "orderId": "o"}).status_code == 400
    mismatch = post(writer, f"{path}/cancel-reservation", {"amount": "25.00", "orderId": "ord_x_1"})
    assert mismatch.status_code == 422 and mismatch.json()["error"]["code"] == "RESERVE_MISMATCH_AMOUNT"
    missing = post(writer, f"{path}/cancel-reservation", {"amount": "5.00", "orderId": "ord_none"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "RESERVE_NOT_FOUND"
    canceled = post(writer, f"{path}/cancel-reservation", {"amount": "20.00", "orderId": "ord_x_1"})
    assert canceled.json()["data"]["available"] == "50.00"
    types = list(Event.objects.filter(type__startswith="balance.").values_list("type", flat=True))
    assert types[-2:] == ["balance.reserved", "balance.released"]


def test_support_only_endpoints_need_the_support_scope(writer, funded_user, chain):
    user = funded_user("0")
    for action in ("credit", "debit", "release", "deduct-reserved"):
        response = post(writer, f"/users/{user.public_id}/balance/{action}", {"amount": "1.00", "orderId": "o"})
        assert response.status_code == 403, action


def test_support_credit_and_debit_move_sandbox_usdc_so_chain_equals_ledger(chain, support, funded_user):
    user = funded_user("10.00")
    path = f"/users/{user.public_id}/balance"
    no_reason = post(support, f"{path}/credit", {"amount": "5.00"})
    assert no_reason.status_code == 400
    credited = post(support, f"{path}/credit", {"amount": "5.00", "description": "goodwill for a late delivery"})
    assert credited.status_code == 200 and credited.json()["available"] == "15.00"
    debited = post(support, f"{path}/debit", {"amount": "3.00", "description": "duplicate credit reversed"})
    assert debited.status_code == 200 and debited.json()["available"] == "12.00"
    assert chain.usdc(user.wallet.public_key) == 12
    from payments.deposits import deposits_sync
    from payments.reconciliation import wallets_reconcile

    deposits_sync()  # the watcher must not count the minted USDC again
    assert support.get(f"/api/v1{path}").json()["available"] == "12.00"
    assert wallets_reconcile() == 0 and not ReconciliationReport.objects.exists()
    reasons = AuditLog.objects.filter(action__in=["balance.credited", "balance.debited"]).values_list(
        "payload_after__reason", flat=True
    )
    assert set(reasons) == {"goodwill for a late delivery", "duplicate credit reversed"}


def test_release_pays_the_seller_on_chain(chain, support, funded_user):
    buyer, seller = funded_user("60.00"), funded_user("0")
    path = f"/users/{buyer.public_id}/balance"
    post(support, f"{path}/reserve", {"amount": "40.00", "orderId": "ord_rel"})
    released = post(
        support, f"{path}/release", {"amount": "40.00", "orderId": "ord_rel", "recipientId": seller.public_id}
    )
    assert released.status_code == 200, released.content
    assert released.json()["available"] == "40.00"  # the seller's balance, as API.md says
    assert chain.usdc(seller.wallet.public_key) == 40 and chain.usdc(buyer.wallet.public_key) == 20
    from payments.deposits import deposits_sync

    deposits_sync()
    assert support.get(f"/api/v1/users/{seller.public_id}/balance").json()["available"] == "40.00"
    assert support.get(f"/api/v1{path}").json()["reserved"] == "0.00"


def test_sync_and_verify_report_drift_without_moving_money(chain, writer, funded_user):
    user = funded_user("10.00")
    path = f"/users/{user.public_id}/balance"
    assert writer.get(f"/api/v1{path}/verify").json()["providerVerified"] is True
    chain.mint(user.wallet.public_key, "2.5")
    synced = post(writer, f"{path}/sync").json()
    assert synced["action"] == "flagged" and synced["discrepancy"] == "2.50" and synced["available"] == "10.00"
    verify = writer.get(f"/api/v1{path}/verify")
    assert verify.status_code == 409 and verify.json()["error"]["code"] == "BALANCE_DISCREPANCY"


def test_crypto_withdrawal_through_the_api(chain, writer, funded_user):
    user = funded_user("100.00")
    outside = chain.outside_account()
    body = {
        "userId": user.public_id,
        "amount": "25.00",
        "destinationType": "crypto",
        "destinationRef": outside.public_key,
    }
    created = writer.post("/api/v1/withdrawals", body, format="json", HTTP_IDEMPOTENCY_KEY="wd-1")
    assert created.status_code == 201, created.content
    data = created.json()["data"]
    assert data["status"] == "WITHDRAWAL_COMPLETED" and data["committed"] is True and data["transactionHash"]
    assert created.json()["status"] == "WITHDRAWAL_COMPLETED"  # top-level mirror
    replay = writer.post("/api/v1/withdrawals", body, format="json", HTTP_IDEMPOTENCY_KEY="wd-1")
    assert replay["Idempotency-Replay"] == "true" and Withdrawal.objects.count() == 1
    assert writer.get(f"/api/v1/withdrawals/{data['id']}").json()["data"]["id"] == data["id"]
    assert writer.get(f"/api/v1/withdrawals/{data['id']}", {"userId": "usr_other"}).status_code == 404
    assert [w["id"] for w in writer.get("/api/v1/withdrawals", {"userId": user.public_id}).json()["data"]] == [
        data["id"]
    ]
    refreshed = writer.post(f"/api/v1/withdrawals/{data['id']}/refresh", {}, format="json")  # exempt: no key
    assert refreshed.status_code == 200
    commit = post(writer, f"/withdrawals/{data['id']}/commit")
    assert commit.status_code == 409 and commit.json()["error"]["code"] == "WITHDRAWAL_NOT_COMMITTABLE"
    assert chain.usdc(outside.public_key) == 25


def test_withdrawal_errors_are_clear_and_move_nothing(chain, writer, funded_user):
    user = funded_user("30.00")
    no_trust = chain.outside_account(trustline=False)
    base = {"userId": user.public_id, "amount": "20.00", "destinationType": "crypto"}
    bad = post(writer, "/withdrawals", {**base, "destinationRef": no_trust.public_key})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "WITHDRAWAL_DESTINATION_INVALID"
    assert "trustline" in bad.json()["error"]["message"]
    over = post(writer, "/withdrawals", {**base, "amount": "6000.00", "destinationRef": no_trust.public_key})
    assert over.status_code == 400 and over.json()["error"]["code"] == "INVALID_AMOUNT"
    missing = post(writer, "/withdrawals", {"amount": "20.00"})
    assert missing.status_code == 400
    assert {f["field"] for f in missing.json()["error"]["details"]["fields"]} >= {"userId", "destinationRef"}
    assert writer.get(f"/api/v1/users/{user.public_id}/balance").json()["available"] == "30.00"
