"""The users, balance, wallet and withdrawal endpoints answer what /api/v1/openapi.json says they
answer (what schemathesis checks in CI), over HTTP against the live server and the sandbox chain."""

import itertools

import pytest
import requests
import schemathesis

pytestmark = pytest.mark.django_db(transaction=True)
keys = (f"schema-{n}" for n in itertools.count())


@pytest.fixture
def api(live_server, chain, make_api_key):
    _, secret = make_api_key(scopes=["read", "write", "support"])
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {secret}"
    schema = schemathesis.openapi.from_dict(session.get(f"{live_server.url}/api/v1/openapi.json", timeout=10).json())

    def call(method: str, template: str, path: str | None = None, body=None, **params):
        headers = {"Idempotency-Key": next(keys)} if method == "POST" else {}
        response = session.request(
            method, f"{live_server.url}/api/v1{path or template}", json=body, params=params, headers=headers, timeout=30
        )
        schema[f"/api/v1{template}"][method].validate_response(response)
        return response

    return call


def test_responses_conform_to_the_openapi_schema(api, funded_user, chain):
    created = api("POST", "/users", body={"externalUserId": "schema-1", "type": "buyer", "metadata": {"a": 1}})
    assert created.status_code == 201
    user_id = created.json()["data"]["id"]
    assert api("POST", "/users", body={"externalUserId": "schema-1"}).status_code == 200
    assert api("POST", "/users", body={"externalUserId": 1}).status_code == 400
    assert api("GET", "/users", type="BUYER").status_code == 200
    assert api("GET", "/users/{user_id}", f"/users/{user_id}").status_code == 200
    assert api("GET", "/users/{user_id}", "/users/usr_nope").status_code == 404

    buyer, seller = funded_user("60.00"), funded_user("0")
    base = f"/users/{buyer.public_id}/balance"
    assert api("GET", "/users/{user_id}/balance", base).status_code == 200
    assert api("GET", "/users/{user_id}/balance/verify", f"{base}/verify").status_code == 200
    assert api("POST", "/users/{user_id}/balance/sync", f"{base}/sync").status_code == 200
    hold = {"amount": "10.00", "orderId": "ord_schema"}
    assert api("POST", "/users/{user_id}/balance/reserve", f"{base}/reserve", hold).status_code == 200
    refused = api("POST", "/users/{user_id}/balance/reserve", f"{base}/reserve", hold | {"amount": "1e3"})
    assert refused.status_code == 400
    cancel = api("POST", "/users/{user_id}/balance/cancel-reservation", f"{base}/cancel-reservation", hold)
    assert cancel.status_code == 200
    adjust = {"amount": "2.00", "description": "schema check"}
    assert api("POST", "/users/{user_id}/balance/credit", f"{base}/credit", adjust).status_code == 200
    assert api("POST", "/users/{user_id}/balance/debit", f"{base}/debit", adjust).status_code == 200
    api("POST", "/users/{user_id}/balance/reserve", f"{base}/reserve", hold)
    release = hold | {"sellerId": seller.public_id}
    assert api("POST", "/users/{user_id}/balance/release", f"{base}/release", release).status_code == 200

    wallet = f"/users/{buyer.public_id}/wallet"
    assert api("GET", "/users/{user_id}/wallet", wallet).status_code == 200
    assert api("GET", "/users/{user_id}/wallet/deposit", f"{wallet}/deposit").status_code == 200
    history = api("GET", "/users/{user_id}/wallet/transactions", f"{wallet}/transactions", limit=2)
    assert history.status_code == 200 and history.json()["hasMore"] is True

    outside = chain.outside_account()
    body = {
        "userId": buyer.public_id,
        "amount": "20.00",
        "destinationType": "crypto",
        "destinationRef": outside.public_key,
    }
    withdrawal = api("POST", "/withdrawals", body=body)
    assert withdrawal.status_code == 201
    withdrawal_id = withdrawal.json()["data"]["id"]
    assert api("GET", "/withdrawals", userId=buyer.public_id).status_code == 200
    assert api("GET", "/withdrawals/{withdrawal_id}", f"/withdrawals/{withdrawal_id}").status_code == 200
    refresh = api("POST", "/withdrawals/{withdrawal_id}/refresh", f"/withdrawals/{withdrawal_id}/refresh")
    assert refresh.status_code == 200
    commit = api("POST", "/withdrawals/{withdrawal_id}/commit", f"/withdrawals/{withdrawal_id}/commit")
    assert commit.status_code == 409
