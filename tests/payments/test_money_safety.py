"""The ways a payment could be sent twice, lost or stuck, each closed."""

import time
from decimal import Decimal

import pytest
from stellar_sdk import TransactionBuilder

from payments.deposits import deposits_sync
from payments.ledger import user_accounts
from payments.models import ChainCursor, Hold, Withdrawal
from payments.reconciliation import wallets_reconcile
from payments.stellar import horizon, usdc
from payments.tasks import withdrawals_resolve_pending
from payments.wallets import DEPOSIT_CURSOR, _deposit_cursor_start
from payments.withdrawals import withdrawal_create_crypto
from sandbox.models import SandboxFault, SandboxPayment
from tests.payments.horizon_faults import horizon_down_once

pytestmark = pytest.mark.django_db(transaction=True)


def withdraw(user, destination, amount="40.00"):
    return withdrawal_create_crypto(
        user=user, amount=Decimal(amount), destination=destination, actor_type="USER", actor_id=user.public_id
    )


def usdc_payments_to(account_id: str) -> int:
    return SandboxPayment.objects.filter(to_account=account_id, asset_code="USDC").count()


def assert_mirrors(chain, user):
    available, held = user_accounts(user)
    assert chain.usdc(user.wallet.public_key) * 10_000_000 == available.balance + held.balance


def test_a_lagging_lookup_resubmits_the_same_envelope_not_a_new_one(chain, funded_user):
    user = funded_user("100.00")
    outside = chain.outside_account()
    SandboxFault.objects.create(
        service="horizon",
        method="POST",
        path_contains="/transactions",
        after_processing=True,
        status_code=504,
        remaining=1,
    )
    SandboxFault.objects.create(
        service="horizon", method="GET", path_contains="/transactions/", status_code=404, remaining=3
    )  # Horizon has not ingested it yet
    withdrawal = withdraw(user, outside.public_key)
    assert withdrawal.status == Withdrawal.Status.PENDING
    withdrawals_resolve_pending()
    withdrawal = Withdrawal.objects.get(pk=withdrawal.pk)
    assert withdrawal.status == Withdrawal.Status.COMPLETED
    assert withdrawal.submit_attempts == 1 and len(withdrawal.attempted_hashes) == 1  # never re-signed
    assert usdc_payments_to(outside.public_key) == 1
    assert_mirrors(chain, user)


def test_an_envelope_is_resigned_only_once_the_network_says_it_can_never_land(chain, funded_user, settings):
    settings.STELLAR_TX_LIFETIME_SECONDS = 1
    settings.STELLAR_TX_EXPIRY_MARGIN_SECONDS = 0
    user = funded_user("100.00")
    outside = chain.outside_account()
    horizon_down_once()  # refused before it reached the ledger
    withdrawal = withdraw(user, outside.public_key)
    assert withdrawal.status == Withdrawal.Status.PENDING
    time.sleep(2.2)  # the first envelope's time bounds pass
    withdrawals_resolve_pending()
    withdrawal = Withdrawal.objects.get(pk=withdrawal.pk)
    assert withdrawal.status == Withdrawal.Status.COMPLETED
    assert withdrawal.submit_attempts == 2 and len(set(withdrawal.attempted_hashes)) == 2
    assert usdc_payments_to(outside.public_key) == 1
    assert_mirrors(chain, user)


def test_an_answer_without_result_codes_is_not_taken_as_a_failure(chain, funded_user):
    user = funded_user("100.00")
    outside = chain.outside_account()
    SandboxFault.objects.create(
        service="horizon",
        method="POST",
        path_contains="/transactions",
        status_code=409,
        after_processing=True,
        remaining=1,
    )  # e.g. a proxy's answer; it did land
    withdrawal = withdraw(user, outside.public_key)
    assert withdrawal.status == Withdrawal.Status.PENDING  # not FAILED: the hold is kept
    assert Hold.objects.get(reference=withdrawal.hold_reference).status == Hold.Status.ACTIVE
    withdrawals_resolve_pending()
    assert Withdrawal.objects.get(pk=withdrawal.pk).status == Withdrawal.Status.COMPLETED
    assert usdc_payments_to(outside.public_key) == 1
    assert_mirrors(chain, user)


def test_a_failure_while_preparing_the_payment_leaves_it_resumable(chain, funded_user):
    user = funded_user("100.00")
    outside = chain.outside_account()
    SandboxFault.objects.create(
        service="horizon",
        method="GET",
        path_contains=f"/accounts/{user.wallet.public_key}",
        status_code=503,
        remaining=1,
    )  # loading the sender's sequence fails
    withdrawal = withdraw(user, outside.public_key)
    assert withdrawal.status == Withdrawal.Status.PENDING and not withdrawal.attempted_hashes
    withdrawals_resolve_pending()
    assert Withdrawal.objects.get(pk=withdrawal.pk).status == Withdrawal.Status.COMPLETED
    assert usdc_payments_to(outside.public_key) == 1
    assert_mirrors(chain, user)


def test_a_retried_release_cannot_pay_the_seller_twice(chain, funded_user, auth_client):
    client = auth_client(scopes=["read", "write", "support"])
    buyer, seller = funded_user("60.00"), funded_user("0")
    path = f"/api/v1/users/{buyer.public_id}/balance"
    client.post(
        f"{path}/reserve", {"amount": "40.00", "orderId": "ord_twice"}, format="json", HTTP_IDEMPOTENCY_KEY="r-1"
    )
    SandboxFault.objects.create(
        service="horizon",
        method="POST",
        path_contains="/transactions",
        after_processing=True,
        timeout=True,
        timeout_seconds=1.5,
        remaining=1,
    )
    from django.test import override_settings

    body = {"amount": "40.00", "orderId": "ord_twice", "sellerId": seller.public_id}
    with override_settings(HORIZON_TIMEOUT_SECONDS=1):
        first = client.post(f"{path}/release", body, format="json", HTTP_IDEMPOTENCY_KEY="rel-1")
    assert first.status_code == 504
    second = client.post(f"{path}/release", body, format="json", HTTP_IDEMPOTENCY_KEY="rel-2")  # a new key
    assert second.status_code == 404 and second.json()["error"]["code"] == "RESERVE_NOT_FOUND"
    withdrawals_resolve_pending()
    assert chain.usdc(seller.wallet.public_key) == 40
    deposits_sync()
    assert usdc_payments_to(seller.wallet.public_key) == 1
    assert client.get(f"/api/v1/users/{seller.public_id}/balance").json()["available"] == "40.00"
    assert client.get(path).json()["reserved"] == "0.00"
    assert_mirrors(chain, buyer)
    assert_mirrors(chain, seller)


def test_a_transaction_split_across_feed_pages_is_credited_whole(chain, funded_user):
    user = funded_user("0")
    sender = chain.outside_account()
    chain.mint(sender.public_key, "100")
    ChainCursor.objects.filter(name=DEPOSIT_CURSOR).delete()
    _deposit_cursor_start()  # the watcher starts here
    chain.mint(user.wallet.public_key, "1")
    chain.mint(user.wallet.public_key, "2")
    tx = (
        TransactionBuilder(horizon().load_account(sender.public_key), chain.passphrase, base_fee=100)
        .append_payment_op(user.wallet.public_key, usdc(), "3")
        .append_payment_op(user.wallet.public_key, usdc(), "4")  # the 4th record: the next page, with page size 3
        .set_timeout(300)
        .build()
    )
    tx.sign(sender)
    horizon().submit_transaction(tx)
    deposits_sync(page_size=3)
    available, _ = user_accounts(user)
    assert available.balance == 100_000_000  # 1 + 2 + (3 + 4)
    assert_mirrors(chain, user)


def test_deduct_reserved_never_moves_money_in_the_ledger_alone(chain, funded_user, auth_client):
    client = auth_client(scopes=["read", "write", "support"])
    user = funded_user("50.00")
    path = f"/api/v1/users/{user.public_id}/balance"
    client.post(f"{path}/reserve", {"amount": "20.00", "orderId": "ord_d"}, format="json", HTTP_IDEMPOTENCY_KEY="d1")
    response = client.post(
        f"{path}/deduct-reserved", {"amount": "20.00", "orderId": "ord_d"}, format="json", HTTP_IDEMPOTENCY_KEY="d2"
    )
    assert response.status_code == 409 and response.json()["error"]["code"] == "ESCROW_NOT_READY"
    missing = client.post(
        f"{path}/deduct-reserved", {"amount": "20.00", "orderId": "ord_none"}, format="json", HTTP_IDEMPOTENCY_KEY="d3"
    )
    assert missing.status_code == 404
    assert client.get(path).json()["reserved"] == "20.00"
    assert_mirrors(chain, user)


def test_a_sandbox_credit_retried_after_its_mint_landed_mints_once(chain, funded_user, auth_client):
    """Issue 9 item 7: the credit minted before its ledger write, and a 5xx is not stored, so
    every retry of one Idempotency-Key minted again (three retries, three payouts)."""
    client = auth_client(scopes=["read", "support"])
    user = funded_user("0")
    path = f"/api/v1/users/{user.public_id}/balance"
    body = {"amount": "25.00", "description": "goodwill for a late delivery"}
    # The faucet mints, then its answer is lost: the credit cannot tell it worked.
    SandboxFault.objects.create(
        service="horizon", method="POST", path_contains="/faucet", after_processing=True, status_code=503, remaining=3
    )
    for _ in range(3):
        failed = client.post(f"{path}/credit", body, format="json", HTTP_IDEMPOTENCY_KEY="credit-1")
        assert failed.status_code == 502 and failed.json()["error"]["code"] == "PROVIDER_ERROR"
    assert usdc_payments_to(user.wallet.public_key) == 1
    deposits_sync()  # the watcher meets the one mint and credits it, once
    assert client.get(path).json()["available"] == "25.00"

    done = client.post(f"{path}/credit", body, format="json", HTTP_IDEMPOTENCY_KEY="credit-1")
    assert done.status_code == 200, done.content
    assert done.json()["available"] == "25.00"  # the same credit, not a second one
    replay = client.post(f"{path}/credit", body, format="json", HTTP_IDEMPOTENCY_KEY="credit-1")
    assert replay.status_code == 200 and replay["Idempotency-Replay"] == "true"
    deposits_sync()
    assert usdc_payments_to(user.wallet.public_key) == 1 and chain.usdc(user.wallet.public_key) == 25
    assert client.get(path).json()["available"] == "25.00"
    verified = client.get(f"{path}/verify")
    assert verified.status_code == 200 and verified.json()["providerVerified"] is True
    assert wallets_reconcile() == 0
    assert_mirrors(chain, user)

    # A new key is a new credit: it mints again, once.
    other = client.post(f"{path}/credit", body, format="json", HTTP_IDEMPOTENCY_KEY="credit-2")
    assert other.status_code == 200 and other.json()["available"] == "50.00"
    assert usdc_payments_to(user.wallet.public_key) == 2
    assert_mirrors(chain, user)

    # A failed credit retried with the same key but another amount is another mint, not a
    # faucet refusal answered 502 (the key would be stuck for this user).
    SandboxFault.objects.create(
        service="horizon", method="POST", path_contains="/faucet", after_processing=True, status_code=503, remaining=1
    )
    assert client.post(f"{path}/credit", body, format="json", HTTP_IDEMPOTENCY_KEY="credit-3").status_code == 502
    changed = {**body, "amount": "30.00"}
    retried = client.post(f"{path}/credit", changed, format="json", HTTP_IDEMPOTENCY_KEY="credit-3")
    assert retried.status_code == 200, retried.content
    deposits_sync()
    assert usdc_payments_to(user.wallet.public_key) == 4 and chain.usdc(user.wallet.public_key) == 105
    assert client.get(path).json()["available"] == "105.00"
    assert_mirrors(chain, user)


def test_each_marketplace_has_its_own_user_ids(chain, auth_client):
    shop_a = auth_client(scopes=["read", "write"], marketplace_id="mkt_a")
    shop_b = auth_client(scopes=["read", "write"], marketplace_id="mkt_b")
    a = shop_a.post("/api/v1/users", {"externalUserId": "42"}, format="json", HTTP_IDEMPOTENCY_KEY="a").json()["data"]
    b = shop_b.post("/api/v1/users", {"externalUserId": "42"}, format="json", HTTP_IDEMPOTENCY_KEY="b").json()["data"]
    assert a["id"] != b["id"]
    assert shop_b.get(f"/api/v1/users/{a['id']}").status_code == 404
    assert [u["id"] for u in shop_b.get("/api/v1/users").json()["data"]] == [b["id"]]


def test_withdrawals_are_limited_to_five_a_minute_per_user(chain, funded_user, auth_client, settings):
    client = auth_client(scopes=["read", "write"])
    # Fixed one-minute windows: six requests straddling a minute's end are tried again (new member).
    for attempt in range(3):
        minute = int(time.time() // 60)
        user = funded_user("0")
        body = {
            "userId": user.public_id,
            "amount": "10.00",
            "destinationType": "crypto",
            "destinationRef": "G" + "A" * 55,
        }
        statuses = [
            client.post("/api/v1/withdrawals", body, format="json", HTTP_IDEMPOTENCY_KEY=f"w{attempt}-{n}").status_code
            for n in range(6)
        ]
        if int(time.time() // 60) == minute:
            break
    assert statuses[:5] == [422] * 5  # refused for their own reason, but counted
    assert statuses[5] == 429
