"""Provider webhook ingress (API.md §13): signatures checked over the raw bytes (Svix for Airtm,
HMAC for Trustless Work), dedupe, the outcomes table, processing by a Celery task, the sweeper,
and support's "Process again"."""

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import F
from django.urls import reverse
from svix.webhooks import Webhook

from escrow.models import Escrow, EscrowStep
from escrow.services import escrow_fund
from offerhub import webhooks
from offerhub.celery import app as celery_app
from offerhub.models import AuditLog, WebhookDelivery
from offerhub.tasks import webhook_deliveries_sweep
from offerhub.webhooks import WebhookIgnored
from tests.escrow.conftest import trustless_work  # noqa: F401  (shared fixture)
from tests.escrow.test_lifecycle import USD
from tests.escrow.test_step_runner import deployed, fault
from tests.factories import UserFactory
from tests.payments.conftest import chain, funded_user  # noqa: F401  (shared fixtures)

AIRTM_SECRET = "whsec_" + base64.b64encode(b"airtm-test-secret-32-bytes-long!").decode()
TW_SECRET = "tw-relay-secret"
AIRTM_URL = "/api/v1/webhooks/airtm"
TW_URL = "/api/v1/webhooks/trustless-work"

Status = WebhookDelivery.Status


@pytest.fixture(autouse=True)
def _secrets(settings):
    settings.OFFERHUB_AIRTM_WEBHOOK_SECRET = AIRTM_SECRET
    settings.TRUSTLESS_WEBHOOK_SECRET = TW_SECRET
    settings.OFFERHUB_WEBHOOKS_INSECURE = False


@pytest.fixture
def retries_in_process():
    """Retries run at once, as in embedded mode (the suite otherwise surfaces a task's first error)."""
    previous = celery_app.conf.task_eager_propagates
    celery_app.conf.task_eager_propagates = False
    yield
    celery_app.conf.task_eager_propagates = previous


@pytest.fixture
def applied(monkeypatch):
    """A processor for Airtm's payin.confirmed (Airtm has none yet), recording what it was given;
    `failures` makes its next calls raise."""
    calls = {"payloads": [], "failures": 0}

    def process(*, delivery, payload):
        if calls["failures"]:
            calls["failures"] -= 1
            raise RuntimeError("Airtm did not answer")
        calls["payloads"].append(payload)

    processor = webhooks.WebhookProcessor(
        provider=WebhookDelivery.Provider.AIRTM, event_types=frozenset({"payin.confirmed"}), process=process
    )
    monkeypatch.setitem(webhooks.PROCESSORS, ("airtm", "payin.confirmed"), processor)
    return calls


def airtm_body(event_type="payin.confirmed", **extra) -> str:
    return json.dumps({"type": event_type, "data": {"id": "pi_1", "code": "top_1", "status": "confirmed"}, **extra})


def svix_headers(body: str, *, msg_id="msg_1", at=None, secret=AIRTM_SECRET) -> dict:
    at = at or datetime.now(tz=UTC)
    signature = Webhook(secret).sign(msg_id, at, body)
    return {
        "HTTP_SVIX_ID": msg_id,
        "HTTP_SVIX_TIMESTAMP": str(int(at.timestamp())),
        "HTTP_SVIX_SIGNATURE": signature,
    }


def post(client, url, body: str | bytes, **headers):
    return client.generic("POST", url, body, content_type="application/json", **headers)


def tw_body(order_id="ord_unknown", event_type="escrow.funded", event_id="evt_1") -> str:
    data = {"contract_id": "", "order_id": order_id, "status": "funded", "amount": "100000000", "currency": "USDC"}
    return json.dumps({"type": event_type, "event_id": event_id, "data": data})


def tw_signature(body: str | bytes, secret=TW_SECRET) -> str:
    raw = body.encode() if isinstance(body, str) else body
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def only_delivery() -> WebhookDelivery:
    return WebhookDelivery.objects.get()


# --- Airtm: the outcomes table --------------------------------------------------------


@pytest.mark.django_db
def test_a_signed_airtm_event_is_stored_and_processed_once_by_the_task(
    api_client, applied, django_capture_on_commit_callbacks
):
    body = airtm_body()
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api_client, AIRTM_URL, body, **svix_headers(body))

    assert response.status_code == 200
    assert response.json()["data"] == {"status": "ok", "processed": True}
    delivery = only_delivery()
    assert (delivery.provider, delivery.event_id, delivery.event_type) == ("airtm", "msg_1", "payin.confirmed")
    assert delivery.status == Status.PROCESSED and delivery.attempts == 1 and delivery.processed_at
    assert delivery.body == body and delivery.authenticated
    assert delivery.headers["svix-id"] == "msg_1" and "svix-signature" in delivery.headers
    assert applied["payloads"] == [json.loads(body)]

    # The same event again (Svix retries): answered as a duplicate, counted, not applied twice.
    with django_capture_on_commit_callbacks(execute=True):
        again = post(api_client, AIRTM_URL, body, **svix_headers(body))
    assert again.status_code == 200
    assert again.json()["data"] == {"status": "ok", "duplicate": True}
    assert only_delivery().duplicates == 1
    assert len(applied["payloads"]) == 1


@pytest.mark.django_db
def test_the_originals_body_shape_is_accepted_and_deduped_on_its_event_id_without_svix_id(
    api_client, applied, django_capture_on_commit_callbacks, settings
):
    body = json.dumps(
        {"eventId": "evt_9", "eventType": "payin.confirmed", "occurredAt": "2026-01-01T00:00:00Z", "data": {}}
    )
    headers = svix_headers(body, msg_id="msg_9")
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api_client, AIRTM_URL, body, **headers)
    assert response.json()["data"] == {"status": "ok", "processed": True}
    assert only_delivery().event_id == "msg_9"  # svix-id first
    assert only_delivery().event_type == "payin.confirmed"


@pytest.mark.django_db
def test_a_wrong_signature_is_401_and_stored_rejected_with_a_truncated_body(api_client, applied):
    body = airtm_body(padding="x" * 5000)
    headers = svix_headers(body, secret="whsec_" + base64.b64encode(b"someone else's secret").decode())

    response = post(api_client, AIRTM_URL, body, **headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "WEBHOOK_SIGNATURE_INVALID"
    delivery = only_delivery()
    assert delivery.status == Status.REJECTED and not delivery.authenticated
    assert len(delivery.body) == 2000 and body.startswith(delivery.body)
    assert applied["payloads"] == []


@pytest.mark.django_db
def test_a_stale_timestamp_is_401_even_when_correctly_signed(api_client, applied):
    body = airtm_body()
    response = post(api_client, AIRTM_URL, body, **svix_headers(body, at=datetime.now(tz=UTC) - timedelta(minutes=6)))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "WEBHOOK_SIGNATURE_INVALID"
    assert only_delivery().status == Status.REJECTED


@pytest.mark.django_db
def test_malformed_signature_entries_are_401_not_500(api_client):
    body = airtm_body()
    headers = {**svix_headers(body), "HTTP_SVIX_SIGNATURE": "no-comma-here"}
    assert post(api_client, AIRTM_URL, body, **headers).status_code == 401


@pytest.mark.django_db
def test_the_raw_bytes_are_verified_not_the_json_they_hold(api_client, applied):
    body = airtm_body()
    headers = svix_headers(body)
    respaced = json.dumps(json.loads(body), indent=1)  # the same JSON, other bytes
    assert json.loads(respaced) == json.loads(body)

    response = post(api_client, AIRTM_URL, respaced, **headers)

    assert response.status_code == 401
    assert applied["payloads"] == []


@pytest.mark.django_db
def test_an_unsigned_delivery_is_answered_ok_logged_ignored_and_never_claims_the_event_id(
    api_client, applied, django_capture_on_commit_callbacks
):
    body = airtm_body(eventId="evt_1")
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api_client, AIRTM_URL, body)
    assert response.status_code == 200
    assert response.json()["data"] == {"status": "ok", "processed": False}
    unsigned = only_delivery()
    assert (unsigned.status, unsigned.note, unsigned.authenticated) == (Status.IGNORED, "unsigned", False)
    assert unsigned.event_id == "evt_1"

    # The real, signed delivery with the same id is not taken for a duplicate of the forgery.
    with django_capture_on_commit_callbacks(execute=True):
        signed = post(api_client, AIRTM_URL, body, **svix_headers(body, msg_id="evt_1"))
    assert signed.json()["data"] == {"status": "ok", "processed": True}
    assert len(applied["payloads"]) == 1


@pytest.mark.django_db
def test_without_a_secret_nothing_is_processed(api_client, applied, settings, django_capture_on_commit_callbacks):
    settings.OFFERHUB_AIRTM_WEBHOOK_SECRET = ""
    body = airtm_body()
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api_client, AIRTM_URL, body, **svix_headers(body))
    assert response.json()["data"] == {"status": "ok", "processed": False}
    delivery = only_delivery()
    assert delivery.status == Status.IGNORED and not delivery.authenticated
    assert "not configured" in delivery.note
    assert applied["payloads"] == []


@pytest.mark.django_db
def test_insecure_mode_processes_without_a_secret(api_client, applied, settings, django_capture_on_commit_callbacks):
    settings.OFFERHUB_AIRTM_WEBHOOK_SECRET = ""
    settings.OFFERHUB_WEBHOOKS_INSECURE = True
    body = airtm_body(eventId="evt_dev")
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api_client, AIRTM_URL, body)
    assert response.json()["data"] == {"status": "ok", "processed": True}
    assert only_delivery().status == Status.PROCESSED
    assert applied["payloads"] == [json.loads(body)]


@pytest.mark.django_db
def test_an_unknown_type_is_ok_and_not_processed(api_client, applied):
    body = airtm_body("payin.teleported")
    response = post(api_client, AIRTM_URL, body, **svix_headers(body))
    assert response.json()["data"] == {"status": "ok", "processed": False}
    assert (only_delivery().status, only_delivery().note) == (Status.IGNORED, "unknown event type 'payin.teleported'")


@pytest.mark.django_db
def test_a_known_airtm_type_without_a_processor_is_kept_for_later(
    api_client, django_capture_on_commit_callbacks, monkeypatch
):
    # Every Airtm type has a processor now (payments.payout_webhooks): take one away for this case.
    monkeypatch.delitem(webhooks.PROCESSORS, (WebhookDelivery.Provider.AIRTM, "payout.completed"), raising=False)
    body = airtm_body("payout.completed")
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api_client, AIRTM_URL, body, **svix_headers(body))
    assert response.json()["data"] == {"status": "ok", "processed": False}
    delivery = only_delivery()
    assert (delivery.status, delivery.note, delivery.authenticated) == (Status.IGNORED, "no processor yet", True)


@pytest.mark.django_db
@pytest.mark.parametrize("body", ["{not json", "[1, 2]", '{"type": 5}'])
def test_a_bad_body_after_a_valid_signature_is_400(api_client, applied, body):
    response = post(api_client, AIRTM_URL, body, **svix_headers(body))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert not WebhookDelivery.objects.exists()


# --- Processing: failures, retries, the sweeper, support --------------------------------


@pytest.mark.django_db
def test_a_processing_failure_is_recorded_and_retried(
    retries_in_process, api_client, applied, django_capture_on_commit_callbacks
):
    applied["failures"] = 1
    body = airtm_body()
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api_client, AIRTM_URL, body, **svix_headers(body))
    assert response.json()["data"]["processed"] is True

    delivery = only_delivery()
    assert delivery.status == Status.PROCESSED
    assert delivery.attempts == 2  # the first raised, the task's retry applied it
    assert delivery.last_error == "RuntimeError: Airtm did not answer"
    assert len(applied["payloads"]) == 1


@pytest.mark.django_db
def test_retries_run_out_then_the_sweeper_and_support_take_over(
    retries_in_process, api_client, applied, django_capture_on_commit_callbacks
):
    applied["failures"] = 100
    body = airtm_body()
    with django_capture_on_commit_callbacks(execute=True):
        post(api_client, AIRTM_URL, body, **svix_headers(body))
    delivery = only_delivery()
    assert delivery.status == Status.FAILED
    assert delivery.attempts == 5  # the first run and the task's 4 retries

    WebhookDelivery.objects.update(updated_at=F("updated_at") - timedelta(minutes=2))
    assert webhook_deliveries_sweep() == 1
    assert only_delivery().attempts == webhooks.MAX_ATTEMPTS  # the sweep's run and its retries, up to the cap

    WebhookDelivery.objects.update(updated_at=F("updated_at") - timedelta(minutes=2))
    assert webhook_deliveries_sweep() == 0  # out of attempts: left FAILED for support


@pytest.mark.django_db
def test_a_crash_between_receipt_and_processing_is_picked_up_by_the_sweeper(api_client, applied):
    body = airtm_body()
    response = post(api_client, AIRTM_URL, body, **svix_headers(body))  # its queued task never runs
    assert response.json()["data"]["processed"] is True
    assert only_delivery().status == Status.RECEIVED

    assert webhook_deliveries_sweep() == 0  # too recent: its own task may still be on its way
    WebhookDelivery.objects.update(updated_at=F("updated_at") - timedelta(minutes=2))
    assert webhook_deliveries_sweep() == 1

    assert only_delivery().status == Status.PROCESSED
    assert len(applied["payloads"]) == 1
    WebhookDelivery.objects.update(updated_at=F("updated_at") - timedelta(minutes=2))
    assert webhook_deliveries_sweep() == 0  # processed: never again


@pytest.mark.django_db
def test_one_failing_delivery_does_not_stop_the_sweep(retries_in_process, api_client, applied, monkeypatch):
    for msg_id in ("msg_a", "msg_b"):
        body = airtm_body()
        post(api_client, AIRTM_URL, body, **svix_headers(body, msg_id=msg_id))
    first = WebhookDelivery.objects.get(event_id="msg_a")
    applied["failures"] = 5  # every attempt of the first delivery's run fails
    WebhookDelivery.objects.update(updated_at=F("updated_at") - timedelta(minutes=2))
    WebhookDelivery.objects.filter(pk=first.pk).update(updated_at=F("updated_at") - timedelta(minutes=1))

    assert webhook_deliveries_sweep() == 2

    assert WebhookDelivery.objects.get(event_id="msg_a").status == Status.FAILED
    assert WebhookDelivery.objects.get(event_id="msg_b").status == Status.PROCESSED


@pytest.fixture
def support_lead_client(client):
    from django.contrib.auth.models import Group

    from backoffice.roles import SUPPORT_LEAD

    lead = UserFactory(is_staff=True)
    lead.groups.add(Group.objects.get(name=SUPPORT_LEAD))
    client.force_login(lead)
    client.staff = lead
    return client


@pytest.mark.django_db
def test_support_processes_a_delivery_again_once_a_processor_exists(
    api_client, support_lead_client, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.delitem(webhooks.PROCESSORS, ("airtm", "payin.confirmed"), raising=False)  # as before top-ups
    body = airtm_body()
    with django_capture_on_commit_callbacks(execute=True):
        post(api_client, AIRTM_URL, body, **svix_headers(body))
    delivery = only_delivery()
    assert (delivery.status, delivery.note) == (Status.IGNORED, "no processor yet")

    detail = support_lead_client.get(reverse("admin:offerhub_webhookdelivery_change", args=[delivery.pk]))
    assert detail.status_code == 200
    assert "&quot;payin.confirmed&quot;" in detail.content.decode()  # the body, indented and escaped

    seen = []
    processor = webhooks.WebhookProcessor(
        provider="airtm",
        event_types=frozenset({"payin.confirmed"}),
        process=lambda *, delivery, payload: seen.append(payload),
    )
    monkeypatch.setitem(webhooks.PROCESSORS, ("airtm", "payin.confirmed"), processor)
    changelist = reverse("admin:offerhub_webhookdelivery_changelist")
    with django_capture_on_commit_callbacks(execute=True):
        response = support_lead_client.post(changelist, {"action": "process_again", "_selected_action": [delivery.pk]})
    assert response.status_code == 302

    assert only_delivery().status == Status.PROCESSED
    assert seen == [json.loads(body)]
    audit = AuditLog.objects.get(action="webhook_delivery.reprocess")
    assert (audit.actor_type, audit.actor_id) == ("SUPPORT", support_lead_client.staff.public_id)
    assert audit.payload_before["status"] == Status.IGNORED

    with django_capture_on_commit_callbacks(execute=True):
        support_lead_client.post(changelist, {"action": "process_again", "_selected_action": [delivery.pk]})
    assert len(seen) == 1  # processed: not again
    assert AuditLog.objects.filter(action="webhook_delivery.reprocess").count() == 1


@pytest.mark.django_db
def test_an_unsigned_delivery_can_never_be_processed_again(api_client, support_lead_client):
    body = airtm_body()
    post(api_client, AIRTM_URL, body)
    changelist = reverse("admin:offerhub_webhookdelivery_changelist")
    support_lead_client.post(changelist, {"action": "process_again", "_selected_action": [only_delivery().pk]})
    assert only_delivery().status == Status.IGNORED
    assert not AuditLog.objects.filter(action="webhook_delivery.reprocess").exists()


# --- Trustless Work -------------------------------------------------------------------


@pytest.mark.django_db
def test_trustless_work_signature_outcomes(api_client):
    body = tw_body()
    wrong = post(api_client, TW_URL, body, HTTP_X_TW_SIGNATURE=tw_signature(body, secret="other"))
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "WEBHOOK_SIGNATURE_INVALID"

    unsigned = post(api_client, TW_URL, body)
    assert unsigned.status_code == 200
    assert unsigned.json()["data"] == {"status": "ok", "processed": False}

    respaced = json.dumps(json.loads(body), indent=2)
    assert post(api_client, TW_URL, respaced, HTTP_X_TW_SIGNATURE=tw_signature(body)).status_code == 401

    statuses = list(WebhookDelivery.objects.order_by("pk").values_list("status", flat=True))
    assert statuses == [Status.REJECTED, Status.IGNORED, Status.REJECTED]


@pytest.mark.django_db
def test_a_trustless_work_event_for_an_unknown_order_is_not_processed(api_client, django_capture_on_commit_callbacks):
    body = tw_body(order_id="ord_nobody")
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api_client, TW_URL, body, HTTP_X_TW_SIGNATURE=tw_signature(body))
    assert response.status_code == 200
    assert response.json()["data"] == {"status": "ok", "processed": False}
    assert (only_delivery().status, only_delivery().note) == (Status.IGNORED, "unknown order")
    assert only_delivery().event_id == "evt_1"


@pytest.mark.django_db
def test_a_processor_that_finds_nothing_to_apply_leaves_the_delivery_ignored(
    api_client, monkeypatch, django_capture_on_commit_callbacks
):
    def process(*, delivery, payload):
        raise WebhookIgnored("no top-up with code top_1")

    processor = webhooks.WebhookProcessor(provider="airtm", event_types=frozenset({"payin.failed"}), process=process)
    monkeypatch.setitem(webhooks.PROCESSORS, ("airtm", "payin.failed"), processor)
    body = airtm_body("payin.failed")
    with django_capture_on_commit_callbacks(execute=True):
        post(api_client, AIRTM_URL, body, **svix_headers(body))
    delivery = only_delivery()
    assert (delivery.status, delivery.note, delivery.attempts) == (Status.IGNORED, "no top-up with code top_1", 1)


@pytest.mark.django_db(transaction=True)
def test_a_trustless_work_event_nudges_only_our_own_escrow_to_read_the_chain(
    api_client,
    chain,  # noqa: F811
    funded_user,  # noqa: F811
    trustless_work,  # noqa: F811
):
    escrow = deployed(funded_user("30.00"), funded_user("0"), 10 * USD, order="ord_hooked")
    other = deployed(funded_user("30.00"), funded_user("0"), 10 * USD, order="ord_other")
    Escrow.objects.update(synced_at=None)

    # A relayed "funded" for an escrow that is not funded: we only read the contract, as the sync does.
    body = tw_body(order_id="ord_hooked", event_type="escrow.funded")
    response = post(api_client, TW_URL, body, HTTP_X_TW_SIGNATURE=tw_signature(body))

    assert response.json()["data"] == {"status": "ok", "processed": True}
    assert only_delivery().status == Status.PROCESSED
    hooked = Escrow.objects.get(pk=escrow.pk)
    assert hooked.synced_at is not None
    assert hooked.status == Escrow.Status.CREATED  # the body's claim changed nothing
    assert Escrow.objects.get(pk=other.pk).synced_at is None

    # A contract id that is not the order's escrow's: not ours to act on.
    data = json.loads(tw_body(order_id="ord_other", event_id="evt_2"))
    data["data"]["contract_id"] = escrow.contract_id
    forged = json.dumps(data)
    response = post(api_client, TW_URL, forged, HTTP_X_TW_SIGNATURE=tw_signature(forged))
    assert response.json()["data"] == {"status": "ok", "processed": False}
    assert Escrow.objects.get(pk=other.pk).synced_at is None


@pytest.mark.django_db(transaction=True)
def test_a_trustless_work_event_drives_an_escrows_open_step(
    api_client,
    chain,  # noqa: F811
    funded_user,  # noqa: F811
    trustless_work,  # noqa: F811
):
    escrow = deployed(funded_user("30.00"), funded_user("0"), 10 * USD, order="ord_funding")
    fault("send-transaction", 503, remaining=1)
    escrow_fund(escrow=escrow)
    fund = EscrowStep.objects.get(escrow=escrow, action=EscrowStep.Action.FUND)
    assert fund.status in EscrowStep.OPEN

    body = tw_body(order_id="ord_funding", event_type="escrow.funding_started")
    response = post(api_client, TW_URL, body, HTTP_X_TW_SIGNATURE=tw_signature(body))

    assert response.json()["data"] == {"status": "ok", "processed": True}
    assert EscrowStep.objects.get(pk=fund.pk).status == EscrowStep.Status.CONFIRMED
    assert Escrow.objects.get(pk=escrow.pk).status == Escrow.Status.FUNDED


def test_production_refuses_insecure_webhooks():
    from tests.offerhub.test_settings import PRODUCTION_SECRET_KEY, REAL_PROVIDERS, WALLET_KEYS, load_settings

    production = {"DEBUG": "false", "SECRET_KEY": PRODUCTION_SECRET_KEY, "OFFERHUB_SANDBOX": "false"}
    refused = load_settings(OFFERHUB_WEBHOOKS_INSECURE="true", **production, **WALLET_KEYS, **REAL_PROVIDERS)
    assert refused.returncode != 0
    assert "OFFERHUB_WEBHOOKS_INSECURE" in refused.stderr
    development = load_settings(OFFERHUB_WEBHOOKS_INSECURE="true", DEBUG="true")
    assert development.returncode == 0, development.stderr


@pytest.mark.django_db
def test_the_deliveries_list_filters_by_provider_and_status_in_a_bounded_number_of_queries(
    api_client, support_lead_client, django_assert_max_num_queries
):
    for number in range(5):
        body = airtm_body()
        post(api_client, AIRTM_URL, body, **svix_headers(body, msg_id=f"msg_{number}"))
        post(api_client, TW_URL, tw_body(event_id=f"evt_{number}"))  # unsigned
    changelist = reverse("admin:offerhub_webhookdelivery_changelist")

    with django_assert_max_num_queries(12):
        page = support_lead_client.get(changelist, {"provider__exact": "airtm", "status__exact": "IGNORED"})
    assert page.status_code == 200
    assert page.context["cl"].result_count == 5
    assert "Process again" in page.content.decode()
    detail = support_lead_client.get(reverse("admin:offerhub_webhookdelivery_change", args=[only_delivery_of("airtm")]))
    assert 'name="_save"' not in detail.content.decode()  # read-only


def only_delivery_of(provider: str) -> int:
    return WebhookDelivery.objects.filter(provider=provider).values_list("pk", flat=True).first()


@pytest.mark.django_db
def test_a_support_agent_may_not_process_deliveries_again(api_client, client, django_capture_on_commit_callbacks):
    from django.contrib.auth.models import Group

    from backoffice.roles import SUPPORT_AGENT

    agent = UserFactory(is_staff=True)
    agent.groups.add(Group.objects.get(name=SUPPORT_AGENT))
    client.force_login(agent)
    body = airtm_body()
    post(api_client, AIRTM_URL, body, **svix_headers(body))
    response = client.post(
        reverse("admin:offerhub_webhookdelivery_changelist"),
        {"action": "process_again", "_selected_action": [only_delivery().pk]},
    )
    assert response.status_code == 403
    assert only_delivery().status == Status.IGNORED
