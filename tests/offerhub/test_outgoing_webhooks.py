"""Outgoing webhooks (API.md §14): signed deliveries to a real receiver, retries with back-off,
no redirects, SSRF refusals, tenancy, and the backoffice's re-send."""

import hashlib
import hmac
import json
import re
from datetime import timedelta

import pytest
from django.contrib.admin.utils import quote
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from hooks.models import OutgoingDelivery, WebhookEndpoint
from hooks.services import (
    backoff_seconds,
    deliveries_create,
    webhook_endpoint_create,
    webhook_endpoint_set_enabled,
)
from hooks.signing import signature_verify
from hooks.tasks import outgoing_deliveries_sweep
from hooks.transport import destination_check
from offerhub.errors import ServiceError
from offerhub.events import events_deliver
from offerhub.models import AuditLog, Event, SubscriberCursor
from offerhub.services import event_publish
from tests.factories import UserFactory
from tests.offerhub.webhook_receiver import Receiver

SYSTEM = {"actor_type": AuditLog.ActorType.SYSTEM, "actor_id": "tests"}


@pytest.fixture
def receiver(request):
    made = []

    def make(statuses=(200,), location="", answer_size=0):
        made.append(Receiver(statuses, location, answer_size))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def debug(settings):
    settings.DEBUG = True  # http and 127.0.0.1 allowed, as in development
    return settings


def endpoint_for(url, events=("*",), marketplace_id="") -> WebhookEndpoint:
    return webhook_endpoint_create(url=url, events=list(events), marketplace_id=marketplace_id, **SYSTEM)


def publish(capture, event_type="order.created", marketplace_id="") -> Event:
    """Publish as a committed request does, then deliver. The test's own transaction never
    commits: its first on-commit dispatch hook stays registered (once per transaction), so a
    later publish in the same test registers none; the delivery that follows every commit is
    run here, with its own on-commit work (the sends) executed."""
    with capture(execute=True):
        event = event_publish(
            type=event_type,
            aggregate_type="Order",
            aggregate_id="ord_1",
            payload={"orderId": "ord_1", "amount": "10.00"},
            marketplace_id=marketplace_id,
        )
    with capture(execute=True):
        events_deliver()
    return event


def make_due(delivery: OutgoingDelivery) -> None:
    """The back-off has elapsed (time moved on, not waited for)."""
    OutgoingDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def sweep(capture) -> int:
    with capture(execute=True):
        return outgoing_deliveries_sweep()


@pytest.mark.django_db
def test_a_receiver_failing_twice_then_succeeding_gets_the_event_signed(
    debug, receiver, django_capture_on_commit_callbacks
):
    target = receiver(statuses=(500, 503, 200))
    endpoint = endpoint_for(target.url)
    event = publish(django_capture_on_commit_callbacks)

    delivery = OutgoingDelivery.objects.get(endpoint=endpoint)
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("pending", 1, 500)
    assert delivery.error == "answered 500" and delivery.response_body == "answer 500"
    assert delivery.next_attempt_at == delivery.last_attempt_at + timedelta(seconds=backoff_seconds(1))
    assert sweep(django_capture_on_commit_callbacks) == 0  # not due yet: nothing sent
    assert len(target.received) == 1

    make_due(delivery)
    assert sweep(django_capture_on_commit_callbacks) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("pending", 2, 503)
    assert delivery.next_attempt_at == delivery.last_attempt_at + timedelta(seconds=backoff_seconds(2))
    assert backoff_seconds(2) == 2 * backoff_seconds(1)

    make_due(delivery)
    sweep(django_capture_on_commit_callbacks)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_status, delivery.next_attempt_at) == (
        "succeeded",
        3,
        200,
        None,
    )
    make_due(delivery)
    assert sweep(django_capture_on_commit_callbacks) == 0  # delivered: never again
    assert len(target.received) == 3

    path, headers, body = target.received[-1]
    assert path == "/hooks/offerhub?src=test"
    assert json.loads(body) == Event.objects.get(pk=event.pk).as_domain_event()
    assert all(received_body == body for _, _, received_body in target.received)  # same bytes each time
    assert headers["OfferHub-Event-Id"] == event.event_id
    assert headers["OfferHub-Event-Type"] == "order.created"
    assert headers["Content-Type"] == "application/json"
    signature = headers["OfferHub-Signature"]
    assert signature_verify(secret=endpoint.secret, body=body, header=signature)
    # An independent check, straight from API.md §14.
    fields = dict(part.split("=", 1) for part in signature.split(","))
    expected = hmac.new(endpoint.secret.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
    assert fields["v1"] == expected
    # And what a receiver must refuse.
    assert not signature_verify(secret=endpoint.secret, body=body.replace(b"10.00", b"99.00"), header=signature)
    assert not signature_verify(secret="whsec_another", body=body, header=signature)
    assert not signature_verify(secret=endpoint.secret, body=body, header=signature, now=int(fields["t"]) + 301)
    assert not signature_verify(secret=endpoint.secret, body=body, header=f"t={fields['t']}")
    assert delivery.request_headers["OfferHub-Signature"] == signature


@pytest.mark.django_db
def test_redirects_are_not_followed(debug, receiver, django_capture_on_commit_callbacks):
    elsewhere = receiver()
    target = receiver(statuses=(302,), location=elsewhere.url)
    endpoint_for(target.url)
    publish(django_capture_on_commit_callbacks)
    delivery = OutgoingDelivery.objects.get()
    assert delivery.status == "pending" and delivery.response_status == 302
    assert delivery.error == f"redirect not followed (Location: {elsewhere.url})"
    assert len(target.received) == 1
    assert elsewhere.received == []


@pytest.mark.django_db
def test_only_an_excerpt_of_a_long_answer_is_kept(debug, receiver, django_capture_on_commit_callbacks):
    target = receiver(statuses=(500,), answer_size=50_000)
    endpoint_for(target.url)
    publish(django_capture_on_commit_callbacks)
    delivery = OutgoingDelivery.objects.get()
    assert delivery.response_status == 500 and delivery.response_body == "x" * 2000


@pytest.mark.django_db
def test_a_failure_past_the_retry_window_is_final(debug, receiver, django_capture_on_commit_callbacks):
    target = receiver(statuses=(500,))
    endpoint_for(target.url)
    publish(django_capture_on_commit_callbacks)
    delivery = OutgoingDelivery.objects.get()
    assert delivery.retry_until - delivery.created_at == timedelta(days=3)
    OutgoingDelivery.objects.filter(pk=delivery.pk).update(retry_until=timezone.now() + timedelta(seconds=5))
    make_due(delivery)
    sweep(django_capture_on_commit_callbacks)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 2, None)
    make_due(delivery)
    assert sweep(django_capture_on_commit_callbacks) == 0


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://localhost/hook",  # a name that resolves to 127.0.0.1
        "https://192.168.0.10:8443/hook",
        "https://0.0.0.0/hook",
        "https://[::ffff:127.0.0.1]/hook",
    ],
)
def test_private_and_loopback_destinations_are_refused_outside_debug(settings, url):
    settings.DEBUG = False
    with pytest.raises(ServiceError) as refused:
        destination_check(url)
    assert refused.value.field == "url"
    assert "private, loopback or reserved" in refused.value.message
    settings.DEBUG = True
    assert destination_check(url.replace("https", "http")).addresses


def test_a_name_that_does_not_resolve_is_accepted_at_registration_and_refused_at_send(settings):
    settings.DEBUG = False

    def nowhere(host, port, type):
        raise OSError("Name or service not known")

    assert destination_check("https://soon.example/hook", resolve=nowhere, must_resolve=False).addresses == ()
    with pytest.raises(ServiceError, match="does not resolve"):
        destination_check("https://soon.example/hook", resolve=nowhere)


def test_a_name_with_one_private_address_among_public_ones_is_refused(settings):
    settings.DEBUG = False

    def resolve(host, port, type):  # a DNS answer mixing a public and a private address
        return [(2, 1, 6, "", ("93.184.216.34", port)), (2, 1, 6, "", ("10.0.0.7", port))]

    with pytest.raises(ServiceError, match=r"10\.0\.0\.7"):
        destination_check("https://mixed.example/hook", resolve=resolve)
    public = destination_check("https://public.example/hook", resolve=lambda *a, **k: resolve(*a, **k)[:1])
    assert public.addresses == ("93.184.216.34",) and public.host == "public.example"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://93.184.216.34/hook", "must use https"),
        ("ftp://example.com/x", "must use https"),
        ("https://user:pw@example.com/", "credentials"),
        ("https:///nohost", "must name a host"),
        ("https://example.com:99999/", "not a valid URL"),
        ("https://" + "a" * 2050, "at most 2048"),
    ],
)
def test_malformed_or_plain_http_urls_are_refused_outside_debug(settings, url, problem):
    settings.DEBUG = False
    with pytest.raises(ServiceError, match=problem):
        destination_check(url)


@pytest.mark.django_db
def test_the_address_is_checked_again_at_send_time(debug, receiver, django_capture_on_commit_callbacks):
    """Created when the host was acceptable; by send time it points somewhere private (as a DNS
    rebinding would make it): nothing is sent."""
    target = receiver()
    endpoint_for(target.url)
    debug.DEBUG = False
    publish(django_capture_on_commit_callbacks)
    delivery = OutgoingDelivery.objects.get()
    assert delivery.status == "pending" and delivery.attempts == 1
    assert "url must use https" in delivery.error
    assert delivery.response_status is None
    assert target.received == []


@pytest.mark.django_db
def test_each_endpoint_hears_only_its_tenant_and_its_event_types(debug, receiver, django_capture_on_commit_callbacks):
    target = receiver()
    mine = endpoint_for(target.url, marketplace_id="mkt_a")
    theirs = endpoint_for(target.url, marketplace_id="mkt_b")
    platform = endpoint_for(target.url)
    orders_only = endpoint_for(target.url, events=["order.*"], marketplace_id="mkt_a")
    disputes_only = endpoint_for(target.url, events=["dispute.opened"], marketplace_id="mkt_a")
    publish(django_capture_on_commit_callbacks, marketplace_id="mkt_a")
    publish(django_capture_on_commit_callbacks, event_type="user.created", marketplace_id="mkt_a")
    got = {
        endpoint.id: sorted(endpoint.deliveries.values_list("event_type", flat=True))
        for endpoint in (mine, theirs, platform, orders_only, disputes_only)
    }
    assert got == {
        mine.id: ["order.created", "user.created"],
        theirs.id: [],
        platform.id: ["order.created", "user.created"],
        orders_only.id: ["order.created"],
        disputes_only.id: [],
    }
    assert len(target.received) == 5
    assert set(OutgoingDelivery.objects.values_list("status", flat=True)) == {"succeeded"}


@pytest.mark.django_db
def test_a_disabled_endpoint_gets_nothing(debug, receiver, django_capture_on_commit_callbacks):
    target = receiver()
    endpoint = endpoint_for(target.url)
    webhook_endpoint_set_enabled(endpoint=endpoint, enabled=False, reason="paused", **SYSTEM)
    publish(django_capture_on_commit_callbacks)
    assert not OutgoingDelivery.objects.exists()
    assert target.received == []
    assert AuditLog.objects.filter(action="webhook_endpoint.disabled", resource_id=endpoint.id).exists()


@pytest.mark.django_db
def test_events_pass_by_while_no_endpoint_exists_and_a_new_endpoint_hears_the_next(
    debug, receiver, django_capture_on_commit_callbacks
):
    target = receiver()
    before = publish(django_capture_on_commit_callbacks)
    cursor = SubscriberCursor.objects.get(name="hooks.subscribers.deliver_to_webhook_endpoints")
    assert cursor.position == Event.objects.get(pk=before.pk).position  # passed by, nothing created
    assert not OutgoingDelivery.objects.exists()
    endpoint_for(target.url)
    after = publish(django_capture_on_commit_callbacks)
    assert list(OutgoingDelivery.objects.values_list("event_id", flat=True)) == [after.event_id]
    assert len(target.received) == 1


@pytest.mark.django_db
def test_a_delivery_disabled_in_flight_is_not_sent(debug, receiver, django_capture_on_commit_callbacks):
    target = receiver(statuses=(500,))
    endpoint = endpoint_for(target.url)
    publish(django_capture_on_commit_callbacks)
    webhook_endpoint_set_enabled(endpoint=endpoint, enabled=False, reason="paused", **SYSTEM)
    delivery = OutgoingDelivery.objects.get()
    make_due(delivery)
    sweep(django_capture_on_commit_callbacks)
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.error == "endpoint disabled: paused"
    assert len(target.received) == 1


@pytest.mark.django_db
def test_the_same_event_twice_is_delivered_once(debug, receiver, django_capture_on_commit_callbacks):
    target = receiver()
    endpoint_for(target.url)
    event = publish(django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        assert deliveries_create(event=Event.objects.get(pk=event.pk).as_domain_event()) == []
    assert OutgoingDelivery.objects.count() == 1
    assert len(target.received) == 1


@pytest.mark.django_db
def test_an_endpoint_failing_for_days_is_disabled_and_support_told(
    debug, receiver, client, django_capture_on_commit_callbacks
):
    UserFactory(is_staff=True, email="support@example.test")
    target = receiver(statuses=(500,))
    created = endpoint_for(target.url)
    # An id the admin's URL quoting would misread if left unquoted ("_3F" is its escape for "?").
    WebhookEndpoint.objects.filter(pk=created.pk).update(id="whe_3F" + created.id[len("whe_3F") :])
    endpoint = WebhookEndpoint.objects.get()
    publish(django_capture_on_commit_callbacks)
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.failing_since is not None
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(days=2))
    make_due(OutgoingDelivery.objects.get())
    sweep(django_capture_on_commit_callbacks)
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).enabled  # 2 days: not yet
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(days=3, hours=1))
    make_due(OutgoingDelivery.objects.get())
    sweep(django_capture_on_commit_callbacks)
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert "every delivery failed since" in endpoint.disabled_reason
    audit = AuditLog.objects.get(action="webhook_endpoint.disabled", resource_id=endpoint.id)
    assert audit.actor_type == AuditLog.ActorType.SYSTEM
    (message,) = mail.outbox
    assert message.to == ["support@example.test"] and endpoint.id in message.subject
    link = re.search(r"https?://\S+/admin/\S+", message.body).group(0)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = client.get(link)
    assert page.status_code == 200 and endpoint.url.encode() in page.content


@pytest.mark.django_db
def test_a_success_clears_the_failing_mark(debug, receiver, django_capture_on_commit_callbacks):
    target = receiver(statuses=(500, 200))
    endpoint = endpoint_for(target.url)
    publish(django_capture_on_commit_callbacks)
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).failing_since is not None
    make_due(OutgoingDelivery.objects.get())
    sweep(django_capture_on_commit_callbacks)
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).failing_since is None


# --- Backoffice ------------------------------------------------------------------------


@pytest.fixture
def support_client(client):
    client.support = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(client.support)
    return client


@pytest.mark.django_db
def test_support_resends_a_failed_delivery_and_sees_request_and_response(
    debug, receiver, support_client, django_capture_on_commit_callbacks
):
    target = receiver(statuses=(500, 200))
    endpoint = endpoint_for(target.url)
    publish(django_capture_on_commit_callbacks)
    delivery = OutgoingDelivery.objects.get()
    OutgoingDelivery.objects.filter(pk=delivery.pk).update(status="failed", next_attempt_at=None)

    page = support_client.get(reverse("admin:hooks_outgoingdelivery_change", args=[delivery.pk]))
    assert page.status_code == 200
    assert b"OfferHub-Signature" in page.content and b"answer 500" in page.content

    changelist = reverse("admin:hooks_outgoingdelivery_changelist")
    with django_capture_on_commit_callbacks(execute=True):
        response = support_client.post(changelist, {"action": "resend", "_selected_action": [delivery.pk]})
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("succeeded", 2, 200)
    assert len(target.received) == 2
    audit = AuditLog.objects.get(action="webhook_delivery.resent")
    assert audit.actor_id == support_client.support.public_id
    assert audit.resource_id == delivery.public_id
    assert endpoint.id in json.dumps(audit.payload_after)


@pytest.mark.django_db
def test_support_resends_every_failed_delivery_of_an_endpoint(
    debug, receiver, support_client, django_capture_on_commit_callbacks
):
    target = receiver(statuses=(500, 500, 200))
    endpoint = endpoint_for(target.url)
    publish(django_capture_on_commit_callbacks)
    publish(django_capture_on_commit_callbacks, event_type="order.closed")
    OutgoingDelivery.objects.update(status="failed", next_attempt_at=None)
    with django_capture_on_commit_callbacks(execute=True):
        support_client.post(
            reverse("admin:hooks_webhookendpoint_changelist"),
            {"action": "resend_failed", "_selected_action": [endpoint.pk]},
        )
    assert set(OutgoingDelivery.objects.values_list("status", flat=True)) == {"succeeded"}
    assert AuditLog.objects.filter(action="webhook_delivery.resent").count() == 2


@pytest.mark.django_db
def test_support_creates_an_endpoint_sees_its_secret_once_and_disables_it(debug, support_client):
    response = support_client.post(
        reverse("admin:hooks_webhookendpoint_add"),
        {"url": "https://hooks.example.com/offerhub", "events_text": "order.*, dispute.opened", "description": "m"},
    )
    assert response.status_code == 200
    assert "adminform" not in (response.context or {}), response.context["adminform"].form.errors
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["order.*", "dispute.opened"]
    assert endpoint.secret.startswith("whsec_") and endpoint.secret.encode() in response.content
    link = re.search(r'<a href="([^"]+)">Go to the endpoint</a>', response.content.decode()).group(1)
    assert link == reverse("admin:hooks_webhookendpoint_change", args=[quote(endpoint.pk)])
    page = support_client.get(link)
    assert page.status_code == 200 and endpoint.secret.encode() not in page.content
    support_client.post(
        reverse("admin:hooks_webhookendpoint_changelist"),
        {"action": "disable_selected", "_selected_action": [endpoint.pk]},
    )
    endpoint.refresh_from_db()
    assert not endpoint.enabled and support_client.support.public_id in endpoint.disabled_reason
    assert AuditLog.objects.filter(action="webhook_endpoint.created", actor_type="SUPPORT").exists()
    assert AuditLog.objects.filter(action="webhook_endpoint.disabled", actor_type="SUPPORT").exists()


@pytest.mark.django_db
def test_the_admin_form_refuses_a_private_url_outside_debug(settings, support_client):
    settings.DEBUG = False
    response = support_client.post(
        reverse("admin:hooks_webhookendpoint_add"), {"url": "https://10.0.0.1/x", "events_text": "*"}
    )
    assert response.status_code == 200
    assert b"private, loopback or reserved" in response.content
    assert not WebhookEndpoint.objects.exists()


# --- The receiver example of docs/events.md ------------------------------------------------


def docs_receiver(secret: str):
    """The Python receiver of docs/events.md, run as written, on a port of its own."""
    import os
    import re
    import threading
    from http.server import ThreadingHTTPServer
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs/events.md").read_text()
    code = re.search(r"### A receiver in Python\n\n```python\n(.*?)```", text, re.S).group(1)
    os.environ["OFFERHUB_WEBHOOK_SECRET"] = secret
    try:
        namespace = {"__name__": "docs_example"}
        exec(compile(code, "docs/events.md", "exec"), namespace)  # noqa: S102  (our own documentation)
    finally:
        del os.environ["OFFERHUB_WEBHOOK_SECRET"]
    server = ThreadingHTTPServer(("127.0.0.1", 0), namespace["Hook"])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, namespace["seen"]


@pytest.mark.django_db
def test_the_documented_receiver_accepts_our_deliveries_and_refuses_forgeries(
    debug, django_capture_on_commit_callbacks
):
    import urllib.error
    import urllib.request

    holder = endpoint_for("http://127.0.0.1:9/placeholder")
    server, seen = docs_receiver(holder.secret)
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        WebhookEndpoint.objects.filter(pk=holder.pk).update(url=url)
        event = publish(django_capture_on_commit_callbacks)
        delivery = OutgoingDelivery.objects.get()
        assert (delivery.status, delivery.response_status) == ("succeeded", 200)
        assert seen == {event.event_id}

        forged = urllib.request.Request(
            url,
            data=delivery.body.encode(),
            headers={"OfferHub-Signature": f"t={int(timezone.now().timestamp())},v1={'0' * 64}"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(forged, timeout=5)  # noqa: S310  (a local test server)
        assert refused.value.code == 401
    finally:
        server.shutdown()
        server.server_close()


# --- TLS to the checked address -------------------------------------------------------------


@pytest.fixture
def tls_receiver(tmp_path):
    """An HTTPS receiver on 127.0.0.1 whose certificate names only `localhost`, from a test CA."""
    import datetime as dt
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.headers["Host"], self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.received, server.ca = received, str(tmp_path / "ca.pem")
    yield server
    server.shutdown()
    server.server_close()


def test_tls_goes_to_the_checked_address_and_verifies_the_urls_name(debug, tls_receiver):
    from hooks.transport import http_post

    destination = destination_check(f"https://localhost:{tls_receiver.server_port}/in")
    assert destination.addresses[0] == "127.0.0.1"
    answer = http_post(destination, body=b"{}", headers={}, max_body=100, ca_certs=tls_receiver.ca)
    assert answer.status == 204
    assert tls_receiver.received == [(f"localhost:{tls_receiver.server_port}", b"{}")]


@pytest.mark.django_db
def test_a_certificate_no_authority_vouches_for_is_refused(debug, tls_receiver, django_capture_on_commit_callbacks):
    endpoint_for(f"https://localhost:{tls_receiver.server_port}/in")
    publish(django_capture_on_commit_callbacks)
    delivery = OutgoingDelivery.objects.get()
    assert delivery.status == "pending" and delivery.response_status is None
    assert "CERTIFICATE_VERIFY_FAILED" in delivery.error
    assert tls_receiver.received == []


@pytest.mark.django_db
def test_a_support_lead_resends_and_an_agent_cannot_reach_webhooks(
    client, debug, receiver, django_capture_on_commit_callbacks
):
    from django.contrib.auth.models import Group

    from backoffice.roles import SUPPORT_AGENT, SUPPORT_LEAD

    target = receiver(statuses=(500, 200))
    endpoint = endpoint_for(target.url)
    publish(django_capture_on_commit_callbacks)
    delivery = OutgoingDelivery.objects.get()
    OutgoingDelivery.objects.filter(pk=delivery.pk).update(status="failed", next_attempt_at=None)
    agent = UserFactory(is_staff=True)
    agent.groups.add(Group.objects.get(name=SUPPORT_AGENT))
    client.force_login(agent)
    assert client.get(reverse("admin:hooks_webhookendpoint_changelist")).status_code == 403
    assert client.get(reverse("admin:hooks_outgoingdelivery_changelist")).status_code == 403

    lead = UserFactory(is_staff=True)
    lead.groups.add(Group.objects.get(name=SUPPORT_LEAD))
    client.force_login(lead)
    page = client.get(reverse("admin:hooks_webhookendpoint_change", args=[quote(endpoint.pk)]))
    assert page.status_code == 200 and endpoint.secret.encode() not in page.content
    deliveries = client.get(reverse("admin:hooks_outgoingdelivery_changelist"))
    assert deliveries.status_code == 200 and b"Re-send" in deliveries.content
    assert client.get(reverse("admin:hooks_webhookendpoint_add")).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("admin:hooks_outgoingdelivery_changelist"), {"action": "resend", "_selected_action": [delivery.pk]}
        )
    assert OutgoingDelivery.objects.get().status == "succeeded"
    assert AuditLog.objects.get(action="webhook_delivery.resent").actor_id == lead.public_id


def test_an_ipv6_literal_is_reached_in_debug(debug):
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from hooks.transport import http_post

    hosts = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            hosts.append(self.headers["Host"])
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    class Server6(ThreadingHTTPServer):
        address_family = socket.AF_INET6

    server = Server6(("::1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        destination = destination_check(f"http://[::1]:{server.server_port}/in")
        answer = http_post(destination, body=b"{}", headers={}, max_body=100)
        assert (answer.status, answer.body) == (200, b"ok")
        assert hosts == [f"[::1]:{server.server_port}"]
    finally:
        server.shutdown()
        server.server_close()
