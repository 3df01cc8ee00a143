"""The top-up API (API.md §7): over HTTP against the sandbox Airtm the live server serves."""

import itertools
import time
from decimal import Decimal
from urllib.parse import urlsplit

import pytest

from offerhub.models import Event
from payments.models import Topup
from tests.factories import UserFactory
from tests.payments.topup_helpers import (
    airtm_credits,
    available,
    link,
    member_fixture,  # noqa: F401  (fixture "member")
    sandbox_fixture,  # noqa: F401  (fixture "sandbox")
)

pytestmark = pytest.mark.django_db(transaction=True)
keys = (f"topup-api-{n}" for n in itertools.count())
S = Topup.Status


@pytest.fixture
def writer(auth_client):
    return auth_client(scopes=["read", "write"])


def post(client, path: str, body=None, *, key: str | None = None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key or next(keys)}
    return client.post(f"/api/v1{path}", body if body is not None else {}, format="json", **headers)


def create(client, user, amount="25.00", **extra):
    return post(client, "/topups", {"user_id": user.public_id, "amount": amount, **extra})


def test_create_answers_the_checkout_url_with_the_top_level_mirror(writer, member, sandbox):
    response = create(writer, member, description="Wallet top-up", metadata={"cart": "c-1"})
    assert response.status_code == 201, response.content
    body = response.json()
    data = body["data"]
    assert data["id"].startswith("topup_") and len(data["id"]) == 38
    assert data["userId"] == member.public_id
    assert (data["amount"], data["currency"], data["status"]) == ("25.00", "USD", S.AWAITING_USER_CONFIRMATION)
    assert data["confirmationUri"] == f"{sandbox.url}/sandbox/airtm/checkout/{data['airtmPayinId']}"
    assert data["expiresAt"].endswith("Z") and data["failureReason"] is None
    assert data["description"] == "Wallet top-up"
    assert body["id"] == data["id"] and body["status"] == data["status"]  # §1.5 mirror
    assert Topup.objects.get(public_id=data["id"]).metadata == {"cart": "c-1"}
    assert [e.type for e in Event.objects.filter(aggregate_id=data["id"]).order_by("pk")] == [
        "topup.created",
        "topup.confirmation_required",
    ]


def test_the_sdk_field_name_user_id_alias_and_a_replay(writer, member, sandbox):
    first = post(writer, "/topups", {"userId": member.public_id, "amount": "10.00"}, key="same-key")
    again = post(writer, "/topups", {"userId": member.public_id, "amount": "10.00"}, key="same-key")
    assert first.status_code == again.status_code == 201
    assert again.json()["data"]["id"] == first.json()["data"]["id"]
    assert again["Idempotency-Replay"] == "true"
    assert len(sandbox.payins(first.json()["data"]["id"])) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": "10.00"}, "user_id"),
        ({"user_id": "usr_x", "amount": 10}, "amount"),
        ({"user_id": "usr_x", "amount": "10.00", "currency": "EUR"}, "currency"),
        ({"user_id": "usr_x", "amount": "10.00", "return_url": "javascript:alert(1)"}, "return_url"),
        ({"user_id": "usr_x", "amount": "10.00", "description": "x" * 251}, "description"),
        ({"user_id": "usr_x", "amount": "10.00", "surprise": 1}, "surprise"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(writer, body, field):
    response = post(writer, "/topups", body)
    assert response.status_code == 400
    error = response.json()["error"]
    if field == "currency":
        assert error["code"] == "INVALID_CURRENCY"
    else:
        assert field in {f["field"] for f in error["details"]["fields"]}


def test_limits_unlinked_and_unknown_users(writer, sandbox):
    linked = link(UserFactory())
    small = create(writer, linked, "0.50")
    assert small.status_code == 400
    assert small.json()["error"]["code"] == "INVALID_AMOUNT"
    assert small.json()["error"]["details"]["min"] == "1.00"
    unlinked = create(writer, UserFactory())
    assert unlinked.status_code == 422 and unlinked.json()["error"]["code"] == "AIRTM_USER_NOT_LINKED"
    missing = post(writer, "/topups", {"user_id": "usr_nobody", "amount": "5.00"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "USER_NOT_FOUND"
    assert not Topup.objects.exists()


def test_scopes(auth_client, member, sandbox):
    reader = auth_client(scopes=["read"])
    assert create(reader, member).status_code == 403
    topup = create(auth_client(scopes=["write"]), member).json()["data"]
    assert post(reader, f"/topups/{topup['id']}/cancel").status_code == 403
    assert post(reader, f"/topups/{topup['id']}/refresh").status_code == 200  # refresh is a read


def test_ten_top_ups_a_minute_per_user(writer, sandbox):
    # The limit counts in fixed one-minute windows: eleven requests that straddle a minute's end
    # are two windows' worth, so that case is tried again, with a new member (a new bucket).
    for _ in range(3):
        minute = int(time.time() // 60)
        user = link(UserFactory())
        answers = [create(writer, user, "1.00").status_code for _ in range(11)]
        if int(time.time() // 60) == minute:
            break
    assert answers == [201] * 10 + [429]


def test_get_list_and_another_users_top_up_is_404(writer, auth_client, member, sandbox):
    mine = create(writer, member).json()["data"]["id"]
    other = link(UserFactory())
    theirs = create(writer, other, "3.00").json()["data"]["id"]

    one = writer.get(f"/api/v1/topups/{mine}")
    assert one.status_code == 200 and one.json()["id"] == mine
    wrong_owner = writer.get(f"/api/v1/topups/{theirs}", {"user_id": member.public_id})
    assert wrong_owner.status_code == 404 and wrong_owner.json()["error"]["code"] == "TOPUP_NOT_FOUND"
    assert writer.get("/api/v1/topups/topup_nope").status_code == 404

    listed = writer.get("/api/v1/topups", {"userId": member.public_id}).json()
    assert [t["id"] for t in listed["data"]] == [mine] and listed["hasMore"] is False
    assert {t["id"] for t in writer.get("/api/v1/topups").json()["data"]} == {mine, theirs}

    # Another marketplace's key sees none of them.
    tenant = auth_client(scopes=["read", "write"], marketplace_id="mkt_other")
    assert tenant.get(f"/api/v1/topups/{mine}").status_code == 404
    assert tenant.get("/api/v1/topups").json()["data"] == []


def test_refresh_after_payment_completes_and_credits_once(writer, member, sandbox):
    topup = create(writer, member, "40.00").json()["data"]
    sandbox.pay(Topup.objects.get(public_id=topup["id"]))
    first = post(writer, f"/topups/{topup['id']}/refresh")
    again = writer.post(f"/api/v1/topups/{topup['id']}/refresh")  # exempt: no Idempotency-Key needed
    assert first.status_code == again.status_code == 200, again.content
    assert first.json()["data"]["status"] == again.json()["status"] == S.SUCCEEDED
    assert available(member) == Decimal("40.00")
    assert len(airtm_credits(member)) == 1


def test_cancel_then_409_and_409_after_success(writer, member, sandbox):
    topup = create(writer, member).json()["data"]
    canceled = post(writer, f"/topups/{topup['id']}/cancel")
    assert canceled.status_code == 200 and canceled.json()["data"]["status"] == S.CANCELED
    assert sandbox.payins(topup["id"])[0].status == "CANCELED"
    again = post(writer, f"/topups/{topup['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["details"]["currentState"] == S.CANCELED

    paid = create(writer, member, "5.00").json()["data"]
    sandbox.pay(Topup.objects.get(public_id=paid["id"]))
    post(writer, f"/topups/{paid['id']}/refresh")
    late = post(writer, f"/topups/{paid['id']}/cancel")
    assert late.status_code == 409 and late.json()["error"]["code"] == "INVALID_STATE"
    assert late.json()["error"]["details"]["allowedStates"] == [S.AWAITING_USER_CONFIRMATION]


def test_the_callback_never_credits_by_itself(client, writer, member, sandbox):
    topup = create(writer, member, "9.00", return_url="https://shop.test/ok", cancel_url="https://shop.test/no")
    topup_id = topup.json()["data"]["id"]

    # The redirect claims success; Airtm says the payin is unpaid: nothing moves, off to the cancel URL.
    response = client.get(f"/api/v1/topups/{topup_id}/callback", {"status": "confirmed", "code": topup_id})
    assert response.status_code == 302 and response["Location"] == "https://shop.test/no"
    assert Topup.objects.get(public_id=topup_id).status == S.AWAITING_USER_CONFIRMATION
    assert available(member) == 0 and airtm_credits(member) == []

    sandbox.pay(Topup.objects.get(public_id=topup_id))
    response = client.get(f"/api/v1/topups/{topup_id}/callback", {"status": "confirmed"})
    assert response.status_code == 302 and response["Location"] == "https://shop.test/ok"
    assert available(member) == Decimal("9.00")  # read at Airtm, then bridged: once
    client.get(f"/api/v1/topups/{topup_id}/callback", {"status": "confirmed"})
    assert len(airtm_credits(member)) == 1

    unknown = client.get("/api/v1/topups/topup_unknown/callback")
    assert unknown.status_code == 302 and urlsplit(unknown["Location"]).path == "/wallet/"


def test_no_top_ups_where_the_airtm_rail_is_off(writer, member, sandbox, settings):
    settings.OFFERHUB_PAYMENTS_PROVIDER = "crypto"
    refused = create(writer, member)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert (error["code"], error["details"]["reason"]) == ("INVALID_REQUEST", "RAIL_DISABLED")
    assert not Topup.objects.exists()


def test_a_tenants_top_up_and_balance_events_carry_its_marketplace(auth_client, member, sandbox):
    """Tenancy of events (API.md §1.10): what a marketplace's key streams or hears by webhook."""
    member.marketplace_id = "mkt_tenant"
    member.save(update_fields=["marketplace_id"])
    tenant = auth_client(scopes=["read", "write"], marketplace_id="mkt_tenant")
    since = Event.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    topup = create(tenant, member, "15.00").json()["data"]
    sandbox.pay(Topup.objects.get(public_id=topup["id"]))
    assert post(tenant, f"/topups/{topup['id']}/refresh").status_code == 200
    events = Event.objects.filter(pk__gt=since, user_id=member.public_id)
    assert {"topup.created", "topup.succeeded", "balance.credited"} <= {event.type for event in events}
    assert {event.marketplace_id for event in events} == {"mkt_tenant"}
