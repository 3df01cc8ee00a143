"""The sandbox Horizon, driven by an unmodified stellar_sdk.Server over HTTP."""

from decimal import Decimal

import pytest
import requests
from stellar_sdk import Asset, Keypair, Server, TransactionBuilder
from stellar_sdk.exceptions import BadRequestError, NotFoundError

from sandbox.models import SandboxFault

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def horizon(live_server, settings):
    url = live_server.url + "/sandbox/horizon"
    settings.STELLAR_HORIZON_URL = url
    server = Server(url)
    server.url = url
    return server


@pytest.fixture
def usdc(settings):
    return Asset("USDC", settings.STELLAR_USDC_ISSUER)


def friendbot(horizon, keypair):
    response = requests.get(horizon.url + "/friendbot", params={"addr": keypair.public_key}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def mint(horizon, keypair, amount):
    response = requests.post(horizon.url + "/faucet", data={"addr": keypair.public_key, "amount": amount}, timeout=10)
    assert response.status_code == 200, response.text


def builder(horizon, source: Keypair, settings_passphrase):
    return TransactionBuilder(horizon.load_account(source.public_key), settings_passphrase, base_fee=100)


def balances(horizon, keypair) -> dict:
    account = horizon.accounts().account_id(keypair.public_key).call()
    return {b.get("asset_code", "XLM"): Decimal(b["balance"]) for b in account["balances"]}


def sponsored_wallet(horizon, platform, usdc, passphrase) -> Keypair:
    """The platform creates a zero-XLM account with a USDC trustline, paying all reserves."""
    user = Keypair.random()
    tx = (
        builder(horizon, platform, passphrase)
        .append_begin_sponsoring_future_reserves_op(user.public_key)
        .append_create_account_op(user.public_key, "0")
        .append_change_trust_op(usdc, source=user.public_key)
        .append_end_sponsoring_future_reserves_op(source=user.public_key)
        .set_timeout(300)
        .build()
    )
    tx.sign(platform)
    tx.sign(user)
    horizon.submit_transaction(tx)
    return user


def test_friendbot_and_account_shape(horizon):
    keypair = Keypair.random()
    friendbot(horizon, keypair)
    account = horizon.load_account(keypair.public_key)
    assert account.sequence > 0
    assert balances(horizon, keypair) == {"XLM": Decimal("10000")}
    with pytest.raises(NotFoundError):
        horizon.load_account(Keypair.random().public_key)


def test_sponsored_account_holds_usdc_with_no_xlm_and_pays_by_fee_bump(horizon, usdc, settings):
    passphrase = settings.STELLAR_NETWORK_PASSPHRASE
    platform = Keypair.random()
    friendbot(horizon, platform)
    alice = sponsored_wallet(horizon, platform, usdc, passphrase)
    bob = sponsored_wallet(horizon, platform, usdc, passphrase)
    assert balances(horizon, alice) == {"USDC": Decimal("0"), "XLM": Decimal("0")}
    platform_account = horizon.accounts().account_id(platform.public_key).call()
    assert platform_account["num_sponsoring"] == 6  # two accounts (2 each) and two trustlines

    mint(horizon, alice, "25.5")
    inner = builder(horizon, alice, passphrase).append_payment_op(bob.public_key, usdc, "10.25").build()
    inner.sign(alice)
    bumped = TransactionBuilder.build_fee_bump_transaction(platform, 200, inner, passphrase)
    bumped.sign(platform)
    result = horizon.submit_transaction(bumped)
    assert result["successful"] is True
    assert balances(horizon, alice)["USDC"] == Decimal("15.25")
    assert balances(horizon, bob)["USDC"] == Decimal("10.25")
    assert balances(horizon, alice)["XLM"] == 0  # the platform paid the fee

    looked_up = horizon.transactions().transaction(result["hash"]).call()
    assert looked_up["successful"] is True
    # Resubmitting the same envelope returns the recorded result instead of applying it twice.
    assert horizon.submit_transaction(bumped)["hash"] == result["hash"]
    assert balances(horizon, bob)["USDC"] == Decimal("10.25")


def test_a_faucet_mint_with_a_memo_happens_once(horizon, usdc, settings):
    platform = Keypair.random()
    friendbot(horizon, platform)
    alice = sponsored_wallet(horizon, platform, usdc, settings.STELLAR_NETWORK_PASSPHRASE)

    def faucet(amount, memo):
        data = {"addr": alice.public_key, "amount": amount, "memo": memo}
        return requests.post(horizon.url + "/faucet", data=data, timeout=10)

    first = faucet("5", "credit:1")
    assert first.status_code == 200, first.text
    assert (first.json()["memo_type"], first.json()["memo"]) == ("text", "credit:1")
    again = faucet("5", "credit:1")  # a retry whose first answer was lost
    assert again.status_code == 200 and again.json()["hash"] == first.json()["hash"]
    assert horizon.transactions().transaction(first.json()["hash"]).call()["memo"] == "credit:1"
    assert balances(horizon, alice)["USDC"] == Decimal("5")
    assert faucet("6", "credit:1").status_code == 400  # the memo minted another amount
    assert faucet("5", "x" * 29).status_code == 400  # longer than a text memo
    assert faucet("5", "credit:2").json()["hash"] != first.json()["hash"]
    assert balances(horizon, alice)["USDC"] == Decimal("10")


def test_wrong_signer_is_rejected_and_nothing_moves(horizon, usdc, settings):
    passphrase = settings.STELLAR_NETWORK_PASSPHRASE
    sender = Keypair.random()
    friendbot(horizon, sender)
    receiver = Keypair.random()
    friendbot(horizon, receiver)
    sequence_before = horizon.load_account(sender.public_key).sequence
    tx = builder(horizon, sender, passphrase).append_payment_op(receiver.public_key, Asset.native(), "5").build()
    tx.sign(Keypair.random())
    with pytest.raises(BadRequestError) as error:
        horizon.submit_transaction(tx)
    assert error.value.extras["result_codes"] == {"transaction": "tx_bad_auth"}
    assert horizon.load_account(sender.public_key).sequence == sequence_before
    assert balances(horizon, receiver)["XLM"] == Decimal("10000")


def test_bad_sequence_is_rejected(horizon, settings):
    passphrase = settings.STELLAR_NETWORK_PASSPHRASE
    sender = Keypair.random()
    friendbot(horizon, sender)
    account = horizon.load_account(sender.public_key)
    account.sequence += 5
    tx = TransactionBuilder(account, passphrase, base_fee=100).append_bump_sequence_op(1).build()
    tx.sign(sender)
    with pytest.raises(BadRequestError) as error:
        horizon.submit_transaction(tx)
    assert error.value.extras["result_codes"] == {"transaction": "tx_bad_seq"}


def test_a_fee_bump_whose_inner_transaction_is_stale_is_refused_as_core_does(horizon, settings):
    """Core refuses it as tx_fee_bump_inner_failed; Horizon gives the inner code beside it."""
    passphrase = settings.STELLAR_NETWORK_PASSPHRASE
    sender, payer = Keypair.random(), Keypair.random()
    friendbot(horizon, sender)
    friendbot(horizon, payer)
    account = horizon.load_account(sender.public_key)
    account.sequence += 5
    inner = TransactionBuilder(account, passphrase, base_fee=100).append_bump_sequence_op(1).build()
    inner.sign(sender)
    bumped = TransactionBuilder.build_fee_bump_transaction(payer.public_key, 200, inner, passphrase)
    bumped.sign(payer)
    with pytest.raises(BadRequestError) as error:
        horizon.submit_transaction(bumped)
    assert error.value.extras["result_codes"] == {
        "transaction": "tx_fee_bump_inner_failed",
        "inner_transaction": "tx_bad_seq",
    }
    assert balances(horizon, payer)["XLM"] == Decimal("10000")  # refused: no fee charged


def test_payment_without_trustline_fails_but_consumes_fee_and_sequence(horizon, usdc, settings):
    passphrase = settings.STELLAR_NETWORK_PASSPHRASE
    platform = Keypair.random()
    friendbot(horizon, platform)
    sender = sponsored_wallet(horizon, platform, usdc, passphrase)
    mint(horizon, sender, "10")
    stranger = Keypair.random()
    friendbot(horizon, stranger)
    sequence_before = horizon.load_account(sender.public_key).sequence
    inner = builder(horizon, sender, passphrase).append_payment_op(stranger.public_key, usdc, "1").build()
    inner.sign(sender)
    bumped = TransactionBuilder.build_fee_bump_transaction(platform, 200, inner, passphrase)
    bumped.sign(platform)
    with pytest.raises(BadRequestError) as error:
        horizon.submit_transaction(bumped)
    assert error.value.extras["result_codes"] == {"transaction": "tx_failed", "operations": ["op_no_trust"]}
    assert horizon.load_account(sender.public_key).sequence == sequence_before + 1
    assert balances(horizon, sender)["USDC"] == Decimal("10")


def test_unsponsored_reserve_and_underfunded_rules(horizon, usdc, settings):
    passphrase = settings.STELLAR_NETWORK_PASSPHRASE
    funder = Keypair.random()
    friendbot(horizon, funder)
    poor = Keypair.random()
    tx = builder(horizon, funder, passphrase).append_create_account_op(poor.public_key, "0.5").build()
    tx.sign(funder)
    with pytest.raises(BadRequestError) as error:
        horizon.submit_transaction(tx)
    assert error.value.extras["result_codes"]["operations"] == ["op_low_reserve"]
    tx = builder(horizon, funder, passphrase).append_create_account_op(poor.public_key, "20000").build()
    tx.sign(funder)
    with pytest.raises(BadRequestError) as error:
        horizon.submit_transaction(tx)
    assert error.value.extras["result_codes"]["operations"] == ["op_underfunded"]


def test_payments_feed_pages_with_cursor(horizon, usdc, settings):
    first, second = Keypair.random(), Keypair.random()
    friendbot(horizon, first)
    friendbot(horizon, second)
    page = horizon.payments().order(desc=False).limit(200).call()
    records = page["_embedded"]["records"]
    mine = [r for r in records if r.get("account") in (first.public_key, second.public_key)]
    assert [r["type"] for r in mine] == ["create_account", "create_account"]
    after = horizon.payments().cursor(mine[0]["paging_token"]).order(desc=False).limit(200).call()
    assert [r["account"] for r in after["_embedded"]["records"]] == [second.public_key]
    per_account = horizon.payments().for_account(second.public_key).call()["_embedded"]["records"]
    assert [r["starting_balance"] for r in per_account] == ["10000.0000000"]


def test_fault_injection_answers_the_configured_status_then_recovers(horizon):
    SandboxFault.objects.create(service="horizon", path_contains="/accounts/", status_code=503, remaining=1)
    keypair = Keypair.random()
    friendbot(horizon, keypair)
    response = requests.get(horizon.url + f"/accounts/{keypair.public_key}", timeout=10)
    assert response.status_code == 503
    assert requests.get(horizon.url + f"/accounts/{keypair.public_key}", timeout=10).status_code == 200
