"""POST /withdrawals (bank, airtm_balance), /commit, /refresh and /cancel (API.md §11) over the
sandbox Airtm and chain the live server serves."""

import itertools
from datetime import timedelta

import pytest
from django.utils import timezone

from offerhub.models import Event
from payments.models import Withdrawal
from sandbox.airtm_engine import airtm_payouts_advance
from sandbox.models import SandboxAirtmPayout

pytestmark = pytest.mark.django_db(transaction=True)
keys = (f"wd-airtm-{n}" for n in itertools.count())


def post(client, path, body=None, key=None):
    return client.post(f"/api/v1{path}", body or {}, format="json", HTTP_IDEMPOTENCY_KEY=key or next(keys))


@pytest.fixture
def writer(auth_client):
    return auth_client(scopes=["read", "write"])


def body(user, **extra):
    return {
        "userId": user.public_id,
        "amount": "25.00",
        "destinationType": "airtm_balance",
        "destinationRef": user.airtm_email,
        **extra,
    }


def test_create_commit_refresh_through_the_api(chain, linked, writer):
    user = linked()
    created = post(writer, "/withdrawals", body(user), key="wd-a1")
    assert created.status_code == 201, created.content
    data = created.json()["data"]
    assert data["status"] == "WITHDRAWAL_CREATED" and data["committed"] is False
    assert data["airtmPayoutId"] and data["destinationType"] == "airtm_balance"
    assert created.json()["status"] == "WITHDRAWAL_CREATED"  # top-level mirror
    replay = post(writer, "/withdrawals", body(user), key="wd-a1")
    assert replay["Idempotency-Replay"] == "true" and Withdrawal.objects.count() == 1
    committed = post(writer, f"/withdrawals/{data['id']}/commit")
    assert committed.status_code == 200, committed.content
    assert committed.json()["data"]["status"] == "WITHDRAWAL_COMMITTED" and committed.json()["data"]["committed"]
    again = post(writer, f"/withdrawals/{data['id']}/commit")
    assert again.status_code == 409 and again.json()["error"]["code"] == "WITHDRAWAL_NOT_COMMITTABLE"
    airtm_payouts_advance(now=timezone.now() + timedelta(hours=1))
    refreshed = writer.post(f"/api/v1/withdrawals/{data['id']}/refresh", {}, format="json")  # exempt: no key
    assert refreshed.status_code == 200 and refreshed.json()["data"]["status"] == "WITHDRAWAL_PENDING"
    airtm_payouts_advance(now=timezone.now() + timedelta(hours=3))
    done = writer.post(f"/api/v1/withdrawals/{data['id']}/refresh", {}, format="json")
    assert done.json()["data"]["status"] == "WITHDRAWAL_COMPLETED", done.content
    assert done.json()["data"]["transactionHash"]
    assert writer.get(f"/api/v1/users/{user.public_id}/balance").json()["data"]["available"] == "75.00"


def test_create_with_commit_true_answers_committed(chain, linked, writer):
    user = linked()
    created = post(writer, "/withdrawals", body(user, destinationType="bank", commit=True))
    assert created.status_code == 201, created.content
    assert created.json()["data"]["status"] == "WITHDRAWAL_COMMITTED" and created.json()["data"]["committed"] is True
    assert SandboxAirtmPayout.objects.get().status == "COMMITTED"


def test_errors_name_their_field_and_move_nothing(chain, linked, funded_user, writer):
    unlinked = funded_user("50.00")
    refused = post(writer, "/withdrawals", {**body(unlinked), "destinationRef": "x@airtm.sandbox"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "AIRTM_USER_NOT_LINKED"
    user = linked("30.00")
    wrong = post(writer, "/withdrawals", body(user, destinationRef="someone-else@airtm.sandbox"))
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "WITHDRAWAL_DESTINATION_INVALID"
    assert wrong.json()["error"]["details"]["field"] == "destinationRef"
    poor = post(writer, "/withdrawals", body(user, amount="30.01"))
    assert poor.status_code == 422 and poor.json()["error"]["code"] == "INSUFFICIENT_FUNDS"
    assert not SandboxAirtmPayout.objects.exists()
    assert writer.get(f"/api/v1/users/{user.public_id}/balance").json()["data"]["available"] == "30.00"


def test_airtm_refusal_answers_its_error_with_the_hold_returned(chain, linked, writer):
    user = linked()
    from sandbox.models import SandboxAirtmUser

    SandboxAirtmUser.objects.filter(email=user.airtm_email).update(status="inactive")
    refused = post(writer, "/withdrawals", body(user, commit=True))
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "WITHDRAWAL_DESTINATION_INVALID"
    assert refused.json()["error"]["details"]["refundedToBalance"] is True
    assert Withdrawal.objects.get().status == Withdrawal.Status.FAILED
    assert writer.get(f"/api/v1/users/{user.public_id}/balance").json()["data"]["available"] == "100.00"


def test_cancel_while_allowed_then_409(chain, linked, writer, auth_client):
    user = linked()
    data = post(writer, "/withdrawals", body(user)).json()["data"]
    reader = auth_client(scopes=["read"])
    assert post(reader, f"/withdrawals/{data['id']}/cancel").status_code == 403
    canceled = post(writer, f"/withdrawals/{data['id']}/cancel")
    assert canceled.status_code == 200, canceled.content
    assert canceled.json()["data"]["status"] == "WITHDRAWAL_CANCELED"
    assert writer.get(f"/api/v1/users/{user.public_id}/balance").json()["data"]["available"] == "100.00"
    again = post(writer, f"/withdrawals/{data['id']}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "INVALID_STATE"
    committed = post(writer, "/withdrawals", body(user, commit=True)).json()["data"]
    refused = post(writer, f"/withdrawals/{committed['id']}/cancel")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "INVALID_STATE"
    assert "can no longer be canceled" in refused.json()["error"]["message"]
    assert Event.objects.filter(type="withdrawal.canceled").count() == 1


def test_another_users_or_marketplaces_withdrawal_is_404(chain, linked, writer, auth_client):
    owner, other = linked(), linked("20.00")
    data = post(writer, "/withdrawals", body(owner)).json()["data"]
    assert writer.get(f"/api/v1/withdrawals/{data['id']}", {"userId": other.public_id}).status_code == 404
    for path in ("cancel", "commit"):
        response = writer.post(
            f"/api/v1/withdrawals/{data['id']}/{path}?userId={other.public_id}",
            {},
            format="json",
            HTTP_IDEMPOTENCY_KEY=next(keys),
        )
        assert response.status_code == 404 and response.json()["error"]["code"] == "WITHDRAWAL_NOT_FOUND"
    elsewhere = auth_client(scopes=["read", "write"], marketplace_id="mkt_elsewhere")
    assert post(elsewhere, f"/withdrawals/{data['id']}/cancel").status_code == 404
    assert Withdrawal.objects.get().status == Withdrawal.Status.CREATED


def test_crypto_withdrawals_cannot_be_canceled(chain, writer, funded_user):
    user = funded_user("50.00")
    outside = chain.outside_account()
    request = {"userId": user.public_id, "amount": "20.00", "destinationType": "crypto"}
    crypto = post(writer, "/withdrawals", {**request, "destinationRef": outside.public_key}).json()["data"]
    refused = post(writer, f"/withdrawals/{crypto['id']}/cancel")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "INVALID_STATE"
