"""One correlation id follows a request into responses, logs, audit rows, events and tasks."""

import logging
import uuid

import pytest
from celery import shared_task
from django.conf import settings
from kombu import Connection

from offerhub.celery import CORRELATION_HEADER
from offerhub.celery import app as celery_app
from offerhub.correlation import CorrelationIdLogFilter, correlation_id_var
from offerhub.services import audit_record, event_publish
from offerhub.tasks import events_dispatch


@shared_task(name="tests.record_correlation")
def record_correlation() -> str:
    row = audit_record(
        action="test.task", resource_type="Test", resource_id="task", actor_type="SYSTEM", actor_id="celery"
    )
    return row.correlation_id


def test_client_request_id_is_kept(client):
    response = client.get("/api/v1/health", HTTP_X_REQUEST_ID="abc.DEF:123-x_y")
    assert response["X-Request-ID"] == "abc.DEF:123-x_y"
    assert response.json()["meta"]["requestId"] == "abc.DEF:123-x_y"


@pytest.mark.parametrize("unsafe", ["has space", "x" * 129, "semi;colon", "new\nline"])
def test_unsafe_request_id_is_replaced_with_a_uuid(client, unsafe):
    response = client.get("/api/v1/health", HTTP_X_REQUEST_ID=unsafe)
    assert str(uuid.UUID(response["X-Request-ID"])) == response["X-Request-ID"]


def test_web_pages_get_a_request_id_too(client, db):
    assert uuid.UUID(client.get("/")["X-Request-ID"])


def test_log_lines_carry_the_correlation_id():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    token = correlation_id_var.set("req-log-1")
    try:
        CorrelationIdLogFilter().filter(record)
    finally:
        correlation_id_var.reset(token)
    assert record.correlation_id == "req-log-1"


@pytest.mark.django_db
def test_events_carry_the_correlation_id():
    token = correlation_id_var.set("req-event-1")
    try:
        event = event_publish(type="test.corr", aggregate_type="Test", aggregate_id="1", payload={})
    finally:
        correlation_id_var.reset(token)
    assert event.as_domain_event()["metadata"]["correlationId"] == "req-event-1"


@pytest.mark.django_db
def test_a_task_runs_under_the_correlation_id_of_its_caller():
    token = correlation_id_var.set("req-task-1")
    try:
        result = record_correlation.delay()
    finally:
        correlation_id_var.reset(token)
    assert result.get() == "req-task-1"


def test_task_message_headers_carry_the_correlation_id_on_the_real_broker():
    if not settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.skip("needs REDIS_URL: the broker test reads the message back from Redis")
    queue = f"test-correlation-{uuid.uuid4().hex}"
    celery_app.conf.task_always_eager = False
    token = correlation_id_var.set("req-broker-1")
    try:
        events_dispatch.apply_async(args=[0], queue=queue)
    finally:
        correlation_id_var.reset(token)
        celery_app.conf.task_always_eager = True
    with Connection(settings.CELERY_BROKER_URL) as connection:
        simple = connection.SimpleQueue(queue)
        try:
            message = simple.get(timeout=5)
            assert message.headers[CORRELATION_HEADER] == "req-broker-1"
            assert message.headers["task"] == "offerhub.tasks.events_dispatch"
            message.ack()
        finally:
            simple.queue.delete()
            simple.close()
