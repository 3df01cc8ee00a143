"""The sandbox Airtm Enterprise API v2: endpoints, reason codes, the hosted checkout, payouts
moving through their states, the enterprise balance, paging, faults, and Svix-signed webhooks."""

import base64
import json
import threading
import uuid
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import Client
from django.utils import timezone
from svix.webhooks import Webhook, WebhookVerificationError

from sandbox.airtm_engine import (
    RETRY_DELAYS_SECONDS,
    airtm_payin_settle,
    airtm_payouts_advance,
    airtm_user_create,
    airtm_webhooks_deliver_due,
)
from sandbox.models import SandboxAirtmPayout, SandboxAirtmUser, SandboxAirtmWebhookDelivery, SandboxFault

BASE = "/sandbox/airtm/v2"
PAYOUT_KEYS = {
    "id",
    "code",
    "status",
    "grossAmount",
    "amount",
    "netAmount",
    "airtmFee",
    "enterpriseFee",
    "airtmUserId",
    "airtmUserEmail",
    "reasonCode",
    "reasonDescription",
    "createdAt",
    "updatedAt",
}


def basic(key: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


class Airtm:
    """Calls the sandbox through Django's test client with the configured Basic credentials."""

    def __init__(self, client, settings):
        self.client = client
        self.auth = basic(settings.OFFERHUB_AIRTM_API_KEY, settings.OFFERHUB_AIRTM_API_SECRET)

    def post(self, path, body=None, auth=None):
        raw = json.dumps(body) if body is not None else ""
        return self.client.post(BASE + path, raw, content_type="application/json", HTTP_AUTHORIZATION=auth or self.auth)

    def get(self, path, params=None, auth=None):
        return self.client.get(BASE + path, params or {}, HTTP_AUTHORIZATION=auth or self.auth)

    def delete(self, path):
        return self.client.delete(BASE + path, HTTP_AUTHORIZATION=self.auth)


@pytest.fixture
def airtm(client, settings, db):
    return Airtm(client, settings)


def payin_body(code="top_1", amount=50.5, **changes):
    body = {
        "code": code,
        "amount": amount,
        "description": "OfferHub top-up",
        "items": [{"description": "Balance top-up", "amount": amount, "quantity": 1}],
        "confirmationUri": "https://offerhub.test/wallet/topups/done",
        "cancelUri": "https://offerhub.test/wallet/topups/canceled",
    }
    return body | changes


def payout_body(email="ana@airtm.sandbox", amount=30, **changes):
    return {"airtmUserEmail": email, "amount": amount, "notes": "OfferHub withdrawal"} | changes


def make_payin(airtm, **changes) -> dict:
    response = airtm.post("/payins", payin_body(**changes))
    assert response.status_code == 201, response.content
    return response.json()


def make_payout(airtm, **changes) -> dict:
    response = airtm.post("/payouts", payout_body(**changes))
    assert response.status_code == 201, response.content
    return response.json()


def balance(airtm) -> dict:
    response = airtm.get("/me/balance")
    assert response.status_code == 200
    return json.loads(response.content, parse_float=Decimal)


def later(seconds: float = 3600):
    return timezone.now() + timedelta(seconds=seconds)


# --- auth and the rate limit ------------------------------------------------------------


def test_every_endpoint_wants_the_basic_credentials(airtm, settings):
    missing = airtm.client.get(BASE + "/me")
    wrong = airtm.get("/me", auth=basic(settings.OFFERHUB_AIRTM_API_KEY, "not-the-secret"))
    garbled = airtm.get("/me", auth="Basic %%%")
    for refused in (missing, wrong, garbled):
        assert refused.status_code == 401
        assert refused.json()["code"] == "415904"
        assert refused.json()["message"]
    assert airtm.post("/payins", payin_body(), auth=basic("nobody", "nothing")).status_code == 401
    assert airtm.get("/me").json() == {"id": "sandbox-enterprise-1", "name": "OfferHub (sandbox)", "currency": "USD"}


def test_more_than_the_limit_in_a_second_is_a_429(client, settings, db):
    # A key of its own: the limit is counted in Redis, shared with the tests running beside this one.
    settings.OFFERHUB_AIRTM_API_KEY = f"rate-test-{uuid.uuid4().hex}"
    settings.SANDBOX_AIRTM_RATE_LIMIT = 1
    airtm = Airtm(client, settings)
    statuses = [airtm.get("/me").status_code for _ in range(20)]
    # Unless every call took over a second (a loaded CI machine is slow, not that slow),
    # two of the 20 share a one-second window and the second is refused.
    assert 429 in statuses
    assert set(statuses) == {200, 429}


# --- payins -----------------------------------------------------------------------------


def test_a_payin_is_created_and_read_back_by_id_and_by_code(airtm, settings):
    response = airtm.post("/payins", payin_body(amount=50.5))
    assert response.status_code == 201
    assert b'"amount": 50.5' in response.content  # a JSON number, never a string
    payin = response.json()
    assert payin["status"] == "CREATED"
    assert payin["code"] == "top_1"
    assert payin["items"] == [{"description": "Balance top-up", "amount": 50.5, "quantity": 1}]
    assert payin["checkoutUrl"] == f"{settings.OFFERHUB_AIRTM_CHECKOUT_BASE_URL}/{payin['id']}"
    assert payin["reasonCode"] is None
    assert airtm.get(f"/payins/{payin['id']}").json() == payin
    assert airtm.get("/payins/by-code/top_1").json() == payin
    assert airtm.get("/payins/nope").status_code == 404
    assert airtm.get("/payins/by-code/nope").json()["code"] == "NOT_FOUND"


def test_items_with_quantities_make_the_amount(airtm):
    items = [{"description": "Hour", "amount": 12.25, "quantity": 2}, {"description": "Fee", "amount": 0.5}]
    response = airtm.post("/payins", payin_body(amount=25, items=items))
    assert response.status_code == 201, response.content
    assert response.json()["amount"] == 25


def test_a_payin_code_is_used_once(airtm):
    make_payin(airtm)
    again = airtm.post("/payins", payin_body(amount=10))
    assert again.status_code == 409
    assert again.json()["code"] == "415029"


@pytest.mark.parametrize(
    "changes",
    [
        {"items": [{"description": "x", "amount": 50, "quantity": 1}]},  # not the sum of the items
        {"amount": "50.5", "items": [{"description": "x", "amount": "50.5", "quantity": 1}]},  # strings
        {"amount": 1.234, "items": [{"description": "x", "amount": 1.234, "quantity": 1}]},  # 3 decimals
        {"amount": 0, "items": [{"description": "x", "amount": 0, "quantity": 1}]},
        {"description": "d" * 251},
        {"confirmationUri": "javascript:alert(1)"},
        {"cancelUri": ""},
        {"items": []},
        {"code": ""},
    ],
)
def test_a_malformed_payin_is_refused(airtm, changes):
    response = airtm.post("/payins", payin_body(**changes))
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "BAD_REQUEST"


def test_a_created_payin_can_be_canceled_once(airtm):
    payin = make_payin(airtm)
    canceled = airtm.delete(f"/payins/{payin['id']}")
    assert canceled.status_code == 200
    assert canceled.json()["status"] == "CANCELED"
    again = airtm.delete(f"/payins/{payin['id']}")
    assert again.status_code == 409
    assert again.json()["code"] == "415055"


# --- the hosted checkout ----------------------------------------------------------------


def test_the_checkout_page_shows_the_amount_and_pay_moves_the_payin(airtm, settings, django_assert_max_num_queries):
    payin = make_payin(airtm, amount=50.5)
    browser = Client(enforce_csrf_checks=True)
    with django_assert_max_num_queries(2):
        page = browser.get(payin["checkoutUrl"].removeprefix(settings.SITE_URL))
    assert page.status_code == 200
    html = page.content.decode()
    assert "$50.50" in html
    assert "Pay $50.50" in html and "Cancel" in html
    assert "csrfmiddlewaretoken" in html
    # Like Airtm's own page, its forms may send the payer back to the merchant's origin.
    policy = dict(directive.split(" ", 1) for directive in page["Content-Security-Policy"].split("; "))
    assert policy["form-action"] == "'self' https://offerhub.test"
    token = page.cookies["csrftoken"].value
    pay_url = f"/sandbox/airtm/checkout/{payin['id']}/pay"
    assert browser.post(pay_url).status_code == 403  # no CSRF token

    paid = browser.post(pay_url, {"csrfmiddlewaretoken": token})
    assert paid.status_code == 302
    assert paid["Location"] == payin["confirmationUri"]
    assert airtm.get(f"/payins/{payin['id']}").json()["status"] == "CONFIRMED"
    settled = browser.get(f"/sandbox/airtm/checkout/{payin['id']}")
    assert "Pay $50.50" not in settled.content.decode()
    assert browser.post(pay_url, {"csrfmiddlewaretoken": token}).status_code == 409


@pytest.mark.parametrize(
    ("button", "status", "back_to"), [("cancel", "CANCELED", "cancelUri"), ("fail", "FAILED", "cancelUri")]
)
def test_cancel_and_a_declined_payment_go_back_to_the_cancel_uri(airtm, button, status, back_to):
    payin = make_payin(airtm)
    browser = Client(enforce_csrf_checks=True)
    token = browser.get(f"/sandbox/airtm/checkout/{payin['id']}").cookies["csrftoken"].value
    answer = browser.post(f"/sandbox/airtm/checkout/{payin['id']}/{button}", {"csrfmiddlewaretoken": token})
    assert answer.status_code == 302
    assert answer["Location"] == payin[back_to]
    read = airtm.get(f"/payins/{payin['id']}").json()
    assert read["status"] == status
    assert (read["reasonCode"] is not None) == (status == "FAILED")


def test_an_unknown_checkout_is_a_404(client, db):
    assert client.get("/sandbox/airtm/checkout/nope").status_code == 404


# --- payouts ------------------------------------------------------------------------------


def test_a_payout_moves_created_committed_pending_completed(airtm):
    payout = make_payout(airtm, code="wd_1", amount=30.25)
    assert set(payout) == PAYOUT_KEYS
    assert payout["status"] == "CREATED"
    assert payout["airtmUserEmail"] == "ana@airtm.sandbox"
    assert payout["airtmUserId"] == SandboxAirtmUser.objects.get(email="ana@airtm.sandbox").airtm_id
    assert (payout["grossAmount"], payout["amount"], payout["netAmount"]) == (30.25, 30.25, 30.25)
    assert (payout["airtmFee"], payout["enterpriseFee"]) == (0, 0)

    committed = airtm.post(f"/payouts/{payout['id']}/commit")
    assert committed.status_code == 200
    assert committed.json()["status"] == "COMMITTED"
    assert airtm_payouts_advance() == 0  # not due yet
    assert airtm_payouts_advance(now=later()) == 1
    assert airtm.get(f"/payouts/{payout['id']}").json()["status"] == "PENDING"
    airtm_payouts_advance(now=later(7200))
    done = airtm.get("/payouts/by-code/wd_1").json()
    assert done["status"] == "COMPLETED"
    assert done["id"] == payout["id"]
    events = airtm.get(f"/payouts/{payout['id']}/events").json()
    assert [event["status"] for event in events["items"]] == ["CREATED", "COMMITTED", "PENDING", "COMPLETED"]
    assert airtm.post(f"/payouts/{payout['id']}/commit").status_code == 409


def test_commit_true_commits_at_creation_and_the_enterprise_fee_stays_with_the_enterprise(airtm):
    before = balance(airtm)
    payout = make_payout(airtm, amount=40, commit=True, enterpriseFee=1.5, internalNote="order 7")
    assert payout["status"] == "COMMITTED"
    assert (payout["amount"], payout["enterpriseFee"], payout["netAmount"]) == (40, 1.5, 38.5)
    assert balance(airtm) == {"available": before["available"] - Decimal("38.5"), "pending": Decimal("38.5")}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (payout_body(memo="x"), 400, "BAD_REQUEST"),  # unknown field
        (payout_body(notes="n" * 256), 400, "BAD_REQUEST"),
        (payout_body(amount=10.001), 400, "BAD_REQUEST"),
        (payout_body(commit="yes"), 400, "BAD_REQUEST"),
        (payout_body(email="nobody@airtm.sandbox"), 404, "415059"),
        (payout_body(email="carla@airtm.sandbox"), 422, "415060"),  # inactive
        (payout_body(email="ben@airtm.sandbox", requireIdVerified=True), 422, "415060"),  # not verified
        (payout_body(amount=200000, commit=True), 422, "415016"),
    ],
)
def test_a_payout_is_refused_with_airtms_reason_code(airtm, body, status, code):
    response = airtm.post("/payouts", body)
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert not SandboxAirtmPayout.objects.exists()


def test_an_unverified_user_can_receive_when_verification_is_not_required(airtm):
    assert make_payout(airtm, email="ben@airtm.sandbox")["status"] == "CREATED"


def test_a_payout_code_is_used_once(airtm):
    make_payout(airtm, code="wd_1")
    again = airtm.post("/payouts", payout_body(code="wd_1"))
    assert again.status_code == 409
    assert again.json()["code"] == "415056"


def test_committing_more_than_the_balance_is_refused_and_leaves_the_payout_created(airtm, settings):
    settings.SANDBOX_AIRTM_OPENING_BALANCE = "20.00"
    payout = make_payout(airtm, amount=30)
    refused = airtm.post(f"/payouts/{payout['id']}/commit")
    assert refused.status_code == 422
    assert refused.json()["code"] == "415016"
    assert airtm.get(f"/payouts/{payout['id']}").json()["status"] == "CREATED"


def test_only_created_or_pending_payouts_can_be_canceled(airtm):
    created = make_payout(airtm)
    assert airtm.delete(f"/payouts/{created['id']}").json()["status"] == "CANCELED"

    committed = make_payout(airtm, commit=True)
    refused = airtm.delete(f"/payouts/{committed['id']}")
    assert refused.status_code == 409
    assert refused.json()["code"] == "415055"

    opening = balance(airtm)
    airtm_payouts_advance(now=later())  # → PENDING
    canceled = airtm.delete(f"/payouts/{committed['id']}")
    assert canceled.status_code == 200
    assert canceled.json()["status"] == "CANCELED"
    assert balance(airtm) == {"available": opening["available"] + 30, "pending": 0}  # the hold is released
    assert airtm.delete(f"/payouts/{committed['id']}").json()["code"] == "415055"


def test_a_payout_to_the_failing_user_fails_and_gives_the_money_back(airtm):
    opening = balance(airtm)
    payout = make_payout(airtm, email="fail@airtm.sandbox", commit=True)
    airtm_payouts_advance(now=later())
    airtm_payouts_advance(now=later(7200))
    failed = airtm.get(f"/payouts/{payout['id']}").json()
    assert failed["status"] == "FAILED"
    assert failed["reasonCode"] == "SANDBOX_PAYOUT_FAILED"
    assert failed["reasonDescription"]
    assert balance(airtm) == opening


def test_a_payout_waits_for_its_user_then_completes_when_they_act(airtm):
    payout = make_payout(airtm, email="action@airtm.sandbox", commit=True)
    airtm_payouts_advance(now=later())
    airtm_payouts_advance(now=later(7200))
    assert airtm.get(f"/payouts/{payout['id']}").json()["status"] == "PENDING_USER_ACTION"
    assert airtm_payouts_advance(now=later(99999)) == 0  # still waiting
    assert airtm.delete(f"/payouts/{payout['id']}").json()["code"] == "415055"
    SandboxAirtmUser.objects.filter(email="action@airtm.sandbox").update(payout_outcome="complete")
    airtm_payouts_advance(now=later(99999))
    assert airtm.get(f"/payouts/{payout['id']}").json()["status"] == "COMPLETED"


# --- balance, users, paging ----------------------------------------------------------------


def test_confirmed_payins_add_and_completed_payouts_subtract(airtm, settings):
    settings.SANDBOX_AIRTM_OPENING_BALANCE = "100.00"
    assert balance(airtm) == {"available": 100, "pending": 0}
    airtm_payin_settle(airtm_id=make_payin(airtm, code="a", amount=50.5)["id"], outcome="pay")
    airtm_payin_settle(airtm_id=make_payin(airtm, code="b", amount=20)["id"], outcome="cancel")
    assert balance(airtm) == {"available": Decimal("150.5"), "pending": 0}
    make_payout(airtm, amount=30.25, commit=True)
    assert balance(airtm) == {"available": Decimal("120.25"), "pending": Decimal("30.25")}
    airtm_payouts_advance(now=later())
    airtm_payouts_advance(now=later(7200))
    assert balance(airtm) == {"available": Decimal("120.25"), "pending": 0}


def test_a_user_is_found_by_email(airtm):
    created = airtm_user_create(email="Dana@Example.com", first_name="Dana", last_name="Lee", country="BR")
    found = airtm.get("/users/dana@example.com")
    assert found.status_code == 200
    assert found.json() == {
        "id": created.airtm_id,
        "status": "active",
        "primaryEmail": "dana@example.com",
        "firstName": "Dana",
        "lastName": "Lee",
        "country": "BR",
        "isVerified": True,
    }
    assert airtm.get("/users/carla@airtm.sandbox").json()["status"] == "inactive"
    missing = airtm.get("/users/nobody@example.com")
    assert missing.status_code == 404
    assert missing.json()["code"] == "415059"


def test_lists_page_with_cursors(airtm):
    codes = [f"top_{n:02}" for n in range(12)]
    for code in codes:
        make_payin(airtm, code=code, amount=1)
    first = airtm.get("/payins", {"perPage": 10}).json()
    assert [p["code"] for p in first["items"]] == codes[::-1][:10]  # newest first
    assert first["startCursor"] == first["items"][0]["id"]
    assert first["endCursor"] == first["items"][-1]["id"]
    second = airtm.get("/payins", {"perPage": 10, "after": first["endCursor"]}).json()
    assert [p["code"] for p in second["items"]] == ["top_01", "top_00"]
    back = airtm.get("/payins", {"perPage": 10, "before": second["startCursor"]}).json()
    assert back["items"] == first["items"]
    empty = airtm.get("/payins", {"perPage": 10, "after": second["endCursor"]}).json()
    assert empty == {"items": [], "startCursor": None, "endCursor": None}
    for bad in ({"perPage": 9}, {"perPage": 1001}, {"after": "nope"}):
        assert airtm.get("/payins", bad).status_code == 400
    make_payout(airtm)
    assert len(airtm.get("/payouts").json()["items"]) == 1


# --- faults --------------------------------------------------------------------------------


def test_a_lost_answer_still_creates_the_payout(airtm):
    SandboxFault.objects.create(
        service="airtm", method="POST", path_contains="/payouts", status_code=503, after_processing=True, remaining=1
    )
    lost = airtm.post("/payouts", payout_body(code="wd_lost"))
    assert lost.status_code == 503
    found = airtm.get("/payouts/by-code/wd_lost")
    assert found.status_code == 200
    assert found.json()["status"] == "CREATED"
    assert airtm.post("/payouts", payout_body(code="wd_lost")).json()["code"] == "415056"


def test_a_5xx_before_processing_creates_nothing_and_a_timeout_answers_late(airtm):
    SandboxFault.objects.create(service="airtm", method="POST", path_contains="/payins", status_code=500, remaining=1)
    assert airtm.post("/payins", payin_body()).status_code == 500
    assert airtm.get("/payins/by-code/top_1").status_code == 404
    SandboxFault.objects.create(service="airtm", path_contains="/me", timeout=True, timeout_seconds=0.05, remaining=1)
    assert airtm.get("/me/balance").status_code == 504
    assert airtm.get("/me/balance").status_code == 200
    SandboxFault.objects.create(service="airtm", status_code=429, remaining=1)
    assert airtm.get("/me").status_code == 429


# --- webhooks ------------------------------------------------------------------------------


def verified(verifier: Webhook, body: bytes, headers: dict) -> dict:
    verifier.verify(body, headers)  # raises WebhookVerificationError unless Svix would accept it
    return json.loads(body)


class Receiver:
    """A small HTTP endpoint that records what it receives and answers the statuses it is given."""

    def __init__(self):
        self.received: list[tuple[dict, bytes]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/api/v1/webhooks/airtm"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver(settings):
    endpoint = Receiver()
    settings.SANDBOX_AIRTM_WEBHOOK_URL = endpoint.url
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()


def test_each_change_is_delivered_signed_as_svix_signs(airtm, receiver, settings, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        payin = make_payin(airtm)
    with django_capture_on_commit_callbacks(execute=True):
        airtm_payin_settle(airtm_id=payin["id"], outcome="pay")
    assert len(receiver.received) == 2
    verifier = Webhook(settings.OFFERHUB_AIRTM_WEBHOOK_SECRET)
    events = [verified(verifier, body, headers) for headers, body in receiver.received]
    assert [event["type"] for event in events] == ["payin.created", "payin.confirmed"]
    assert events[1]["data"]["id"] == payin["id"]
    assert events[1]["data"]["status"] == "CONFIRMED"
    assert b'"amount": 50.5' in receiver.received[1][1]
    headers, body = receiver.received[1]
    assert headers["svix-id"].startswith("msg_")
    assert headers["svix-signature"].startswith("v1,")
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"another-secret").decode()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(body.replace(b"CONFIRMED", b"CANCELED"), headers)
    assert set(SandboxAirtmWebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"}


def test_payout_changes_are_delivered_too(airtm, receiver, settings, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        payout = make_payout(airtm, commit=True)
        airtm_payouts_advance(now=later())
        airtm_payouts_advance(now=later(7200))
    verifier = Webhook(settings.OFFERHUB_AIRTM_WEBHOOK_SECRET)
    events = [verified(verifier, body, headers) for headers, body in receiver.received]
    assert [event["type"] for event in events] == [
        "payout.created",
        "payout.committed",
        "payout.pending",
        "payout.completed",
    ]
    assert set(events[-1]["data"]) == PAYOUT_KEYS
    assert events[-1]["data"]["id"] == payout["id"]


def test_a_refused_delivery_is_retried_on_svixs_schedule_with_the_same_id(
    airtm, receiver, settings, django_capture_on_commit_callbacks
):
    receiver.status = 404  # the receiving endpoint does not exist yet: a failure like any other
    with django_capture_on_commit_callbacks(execute=True):
        make_payin(airtm)
    delivery = SandboxAirtmWebhookDelivery.objects.get()
    # It reached our own endpoint (a 404 until the receiver exists: a failed delivery, retried).
    assert delivery.attempts == 1 and delivery.last_response_status is not None
    assert (delivery.status == "succeeded") == (200 <= delivery.last_response_status < 300)
    clock = timezone.now()
    assert delivery.next_attempt_at - clock == pytest.approx(timedelta(seconds=5), abs=timedelta(seconds=2))
    assert airtm_webhooks_deliver_due() == 0  # not due yet

    for attempt, delay in enumerate(RETRY_DELAYS_SECONDS[1:], start=2):
        assert airtm_webhooks_deliver_due(now=clock + timedelta(seconds=delay - 1)) == 0
        clock += timedelta(seconds=delay)
        assert airtm_webhooks_deliver_due(now=clock) == 1
        delivery.refresh_from_db()
        assert delivery.attempts == attempt
    assert delivery.status == "failed"  # 8 attempts, then Svix gives up
    assert delivery.next_attempt_at is None
    ids = {headers["svix-id"] for headers, _ in receiver.received}
    assert ids == {delivery.msg_id}
    assert len(receiver.received) == len(RETRY_DELAYS_SECONDS)


def test_the_compressed_schedule_retries_within_the_test_and_stops_on_success(
    airtm, receiver, settings, django_capture_on_commit_callbacks
):
    settings.SANDBOX_AIRTM_WEBHOOK_RETRY_FACTOR = 0.001  # 5 s → 5 ms, 5 min → 0.3 s
    receiver.status = 500
    with django_capture_on_commit_callbacks(execute=True):
        make_payin(airtm)
    delivery = SandboxAirtmWebhookDelivery.objects.get()
    assert delivery.attempts == 1
    threading.Event().wait(0.02)
    receiver.status = 200
    assert airtm_webhooks_deliver_due() == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_response_status) == ("succeeded", 2, 200)
    assert airtm_webhooks_deliver_due(now=later(10**6)) == 0
    Webhook(settings.OFFERHUB_AIRTM_WEBHOOK_SECRET).verify(receiver.received[-1][1], receiver.received[-1][0])


def test_a_recipient_created_in_a_test_can_be_scripted(airtm):
    airtm_user_create(email="slow@example.com", payout_outcome=SandboxAirtmUser.PayoutOutcome.FAIL)
    payout = make_payout(airtm, email="slow@example.com", commit=True)
    airtm_payouts_advance(now=later())
    airtm_payouts_advance(now=later(7200))
    assert airtm.get(f"/payouts/{payout['id']}").json()["status"] == "FAILED"


def test_the_admin_lists_the_sandbox_airtm_in_dollars(airtm, client):
    from django.urls import reverse

    from tests.factories import UserFactory

    payout = make_payout(airtm, amount=30.25, enterpriseFee=0.25)
    make_payin(airtm, amount=50.5)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    payouts_page = client.get(reverse("admin:sandbox_sandboxairtmpayout_changelist")).content.decode()
    assert "$30.25" in payouts_page and "$0.25" in payouts_page and "3025" not in payouts_page
    detail = client.get(reverse("admin:sandbox_sandboxairtmpayout_change", args=[payout_pk(payout)])).content.decode()
    assert "$30.25" in detail and "CREATED" in detail
    assert "$50.50" in client.get(reverse("admin:sandbox_sandboxairtmpayin_changelist")).content.decode()
    assert client.get(reverse("admin:sandbox_sandboxairtmpayin_add")).status_code == 403  # read-only


def payout_pk(payout: dict) -> int:
    return SandboxAirtmPayout.objects.get(airtm_id=payout["id"]).pk


def test_a_payouts_events_page_too(airtm):
    payout = make_payout(airtm, commit=True)
    first = airtm.get(f"/payouts/{payout['id']}/events", {"perPage": 10}).json()
    assert [event["status"] for event in first["items"]] == ["CREATED", "COMMITTED"]
    after = airtm.get(f"/payouts/{payout['id']}/events", {"after": first["startCursor"]}).json()
    assert [event["status"] for event in after["items"]] == ["COMMITTED"]
    assert airtm.get(f"/payouts/{payout['id']}/events", {"after": "x"}).status_code == 400
    assert airtm.get("/payouts/nope/events").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_over_real_http_with_basic_auth(live_server, settings):
    import requests

    settings.SANDBOX_AIRTM_WEBHOOK_URL = live_server.url + "/api/v1/webhooks/airtm"
    credentials = (settings.OFFERHUB_AIRTM_API_KEY, settings.OFFERHUB_AIRTM_API_SECRET)
    url = live_server.url + BASE
    created = requests.post(f"{url}/payins", json=payin_body(code="http_1"), auth=credentials, timeout=10)
    assert created.status_code == 201, created.text
    read = requests.get(f"{url}/payins/by-code/http_1", auth=credentials, timeout=10)
    assert read.json()["id"] == created.json()["id"]
    assert requests.get(f"{url}/me", auth=("x", "y"), timeout=10).json()["code"] == "415904"
    page = requests.get(live_server.url + f"/sandbox/airtm/checkout/{created.json()['id']}", timeout=10)
    assert page.status_code == 200 and "$50.50" in page.text
    delivery = SandboxAirtmWebhookDelivery.objects.get(resource_id=created.json()["id"])
    # It reached our own endpoint (a 404 until the receiver exists: a failed delivery, retried).
    assert delivery.attempts == 1 and delivery.last_response_status is not None
    assert (delivery.status == "succeeded") == (200 <= delivery.last_response_status < 300)


def test_beat_drives_the_sandbox_airtm(airtm, settings):
    from offerhub.celery import app

    app.loader.import_default_modules()
    scheduled = {
        entry["task"] for name, entry in settings.CELERY_BEAT_SCHEDULE.items() if name.startswith("sandbox-airtm")
    }
    assert scheduled == {"sandbox.tasks.airtm_payouts_advance_task", "sandbox.tasks.airtm_webhooks_deliver_due_task"}
    assert scheduled <= set(app.tasks)
    settings.SANDBOX_AIRTM_PAYOUT_STEP_SECONDS = 0
    payout = make_payout(airtm, commit=True)
    assert app.tasks["sandbox.tasks.airtm_payouts_advance_task"].delay().get() == 1
    assert airtm.get(f"/payouts/{payout['id']}").json()["status"] == "PENDING"
