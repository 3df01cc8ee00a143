"""Delivery passes that spend fewer statements keep their guarantees: writing subscribers run
without savepoints until one fails (then the pass is redone with them, pushes not repeated),
no dispatch task when a delivery on this thread already took the events, e-mails of one
transaction sent together, and audit rows and events of a batch inserted together."""

import pytest
from celery.signals import task_prerun
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from offerhub.events import event_subscriber, events_deliver
from offerhub.models import AuditLog, EmailNotification, Event, SubscriberCursor
from offerhub.services import (
    audit_record,
    email_notification_send_on_commit,
    email_notifications_send,
    event_publish,
    outbox_batched,
)

calls: dict[str, list[str]] = {"push": [], "writer": [], "breaker": []}
breaking = {"on": False}


@event_subscriber("test.passes", name="tests.passes.push", writes=False)
def push(event: dict) -> None:
    calls["push"].append(event["eventId"])


@event_subscriber("test.passes", name="tests.passes.writer")
def writer(event: dict) -> None:
    calls["writer"].append(event["eventId"])
    EmailNotification.objects.create(key=f"{event['eventId']}:writer", event_id=event["eventId"], subject="", body="")


@event_subscriber("test.passes", name="tests.passes.zbreaker")
def breaker(event: dict) -> None:
    calls["breaker"].append(event["eventId"])
    EmailNotification.objects.create(key=f"{event['eventId']}:breaker", event_id=event["eventId"], subject="", body="")
    if breaking["on"]:
        raise RuntimeError("half done")


@event_subscriber("test.swallows", name="tests.swallows.a_swallower")
def swallower(event: dict) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")
    except DatabaseError:
        pass  # swallowed: the transaction is left aborted for whoever writes next


@event_subscriber("test.swallows", name="tests.swallows.b_innocent")
def innocent(event: dict) -> None:
    calls["writer"].append(event["eventId"])
    EmailNotification.objects.create(key=f"{event['eventId']}:innocent", event_id=event["eventId"], subject="", body="")


class RefusingBackend(EmailBackend):
    """The locmem backend, but a mail server that refuses any recipient named refuse@…."""

    def send_messages(self, messages):
        if any(address.startswith("refuse@") for message in messages for address in message.to):
            raise ConnectionRefusedError("the mail server refused")
        return super().send_messages(messages)


@pytest.fixture(autouse=True)
def _reset():
    for items in calls.values():
        items.clear()
    breaking["on"] = False


def publish(event_type: str = "test.passes") -> Event:
    return event_publish(type=event_type, aggregate_type="Test", aggregate_id="t", payload={})


@pytest.mark.django_db(transaction=True)
def test_a_pass_without_failures_runs_writing_subscribers_without_savepoints():
    with transaction.atomic():
        publish("test.other")  # cursors exist and stand at the end
    with transaction.atomic():
        event = Event.objects.create(type="test.passes", aggregate_type="Test", aggregate_id="t", payload={})
    with CaptureQueriesContext(connection) as queries:
        assert events_deliver() >= 3
    assert calls == {"push": [event.event_id], "writer": [event.event_id], "breaker": [event.event_id]}
    assert not [q for q in queries.captured_queries if "SAVEPOINT" in q["sql"]]
    assert EmailNotification.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_failing_writer_redoes_the_pass_with_savepoints_without_pushing_or_asking_twice(settings):
    settings.OFFERHUB_EVENT_RETRY_BASE_SECONDS = 3600
    breaking["on"] = True
    with transaction.atomic():
        publish("test.other")
    with transaction.atomic():
        event = Event.objects.create(type="test.passes", aggregate_type="Test", aggregate_id="t", payload={})
    events_deliver()
    assert calls["push"] == [event.event_id]  # pushed once, though its pass ran twice
    assert calls["breaker"] == [event.event_id]  # its failure is recorded, not asked for again
    assert calls["writer"] == [event.event_id, event.event_id]  # its first write was rolled back with the pass
    keys = set(EmailNotification.objects.values_list("key", flat=True))
    assert keys == {f"{event.event_id}:writer"}  # the breaker's half-done write is undone
    position = Event.objects.get(pk=event.pk).position
    assert SubscriberCursor.objects.get(name="tests.passes.writer").position == position
    broken = SubscriberCursor.objects.get(name="tests.passes.zbreaker")
    assert broken.position < position and broken.failures == 1 and "half done" in broken.last_error


def _dispatch_tasks_counted():
    names = []

    def count(sender=None, **kwargs):
        names.append(sender.name)

    task_prerun.connect(count)
    return names, lambda: task_prerun.disconnect(count)


@pytest.mark.django_db(transaction=True)
def test_no_dispatch_task_when_a_delivery_on_this_thread_already_took_the_events():
    names, stop = _dispatch_tasks_counted()
    try:
        with transaction.atomic():
            # Runs first after the commit, as an escrow drive started by the same commit does in process.
            transaction.on_commit(events_deliver)
            first = publish()
        assert "offerhub.tasks.events_dispatch" not in names
        assert calls["push"] == [first.event_id]
        with transaction.atomic():
            second = publish()
        assert names.count("offerhub.tasks.events_dispatch") == 1  # nothing delivered it before: a task
        assert calls["push"] == [first.event_id, second.event_id]
    finally:
        stop()


@pytest.mark.django_db(transaction=True)
def test_the_emails_of_one_transaction_are_sent_by_one_task_and_once(settings):
    names, stop = _dispatch_tasks_counted()
    try:
        with transaction.atomic():
            for n in range(3):
                row = EmailNotification.objects.create(
                    key=f"k{n}", event_id=f"evt_{n}", recipients=[f"to{n}@example.test"], subject=f"S{n}", body="B"
                )
                email_notification_send_on_commit(notification_pk=row.pk)
        assert names.count("offerhub.tasks.email_notifications_send") == 1
        assert sorted(message.subject for message in mail.outbox) == ["S0", "S1", "S2"]
        assert not EmailNotification.objects.filter(sent_at__isnull=True).exists()
        assert (
            email_notifications_send(notification_pks=list(EmailNotification.objects.values_list("pk", flat=True))) == 0
        )
        assert len(mail.outbox) == 3  # sent already: not again
    finally:
        stop()


@pytest.mark.django_db(transaction=True)
def test_an_email_the_server_refuses_stays_unsent_for_the_sweeper_and_the_others_go(settings):
    settings.EMAIL_BACKEND = f"{__name__}.RefusingBackend"
    refused = EmailNotification.objects.create(
        key="a", event_id="evt_a", recipients=["refuse@example.test"], subject="A", body="B"
    )
    sent = EmailNotification.objects.create(
        key="b", event_id="evt_b", recipients=["ok@example.test"], subject="B", body="B"
    )
    assert email_notifications_send(notification_pks=[refused.pk, sent.pk]) == 1
    assert [message.subject for message in mail.outbox] == ["B"]
    refused.refresh_from_db()
    sent.refresh_from_db()
    assert refused.sent_at is None and sent.sent_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_batch_inserts_its_rows_together_in_order_and_drops_those_of_a_savepoint_rolled_back():
    with transaction.atomic():
        with CaptureQueriesContext(connection) as queries, outbox_batched():
            audit_record(action="a.one", resource_type="T", resource_id="1", actor_type="SYSTEM", actor_id="t")
            first = publish("test.batch.one")
            try:
                with transaction.atomic():  # undone: its rows must not be inserted
                    audit_record(
                        action="a.undone", resource_type="T", resource_id="2", actor_type="SYSTEM", actor_id="t"
                    )
                    publish("test.batch.undone")
                    raise RuntimeError("undo")
            except RuntimeError:
                pass
            with outbox_batched():  # nested: joins the outer batch
                publish("test.batch.two")
            assert not Event.objects.filter(type__startswith="test.batch").exists()  # not inserted yet
        writes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith(("INSERT", "WITH"))]
        assert len(writes) == 1, writes  # the audit rows and the events together
        assert first.pk and not first._state.adding  # each row got its own id back
    assert list(Event.objects.filter(type__startswith="test.batch").order_by("id").values_list("type", flat=True)) == [
        "test.batch.one",
        "test.batch.two",
    ]
    assert Event.objects.get(type="test.batch.one").event_id == first.event_id
    assert list(AuditLog.objects.values_list("action", flat=True)) == ["a.one"]
    assert Event.objects.get(pk=first.pk).type == "test.batch.one"


@pytest.mark.django_db(transaction=True)
def test_a_batch_of_only_events_or_only_audit_rows_is_one_insert():
    with transaction.atomic():
        with CaptureQueriesContext(connection) as queries, outbox_batched():
            publish("test.batch.alone")
            publish("test.batch.alone.two")
        assert len(queries) == 1 and queries[0]["sql"].startswith("INSERT INTO")
        with CaptureQueriesContext(connection) as queries, outbox_batched():
            audit = audit_record(
                action="a.alone", resource_type="T", resource_id="1", actor_type="SYSTEM", actor_id="t"
            )
        assert len(queries) == 1
    assert AuditLog.objects.get(pk=audit.pk).public_id == audit.public_id


@pytest.mark.django_db(transaction=True)
def test_an_error_leaving_a_batch_drops_its_rows_with_the_transaction():
    with pytest.raises(RuntimeError), transaction.atomic(), outbox_batched():
        publish("test.batch.lost")
        raise RuntimeError("rolled back")
    with transaction.atomic(), outbox_batched():
        publish("test.batch.kept")
    assert list(Event.objects.filter(type__startswith="test.batch").values_list("type", flat=True)) == [
        "test.batch.kept"
    ]


batches: list[list[str]] = []


@event_subscriber("test.batch.*", name="tests.passes.batch", batch=True)
def batch_writer(events: list[dict]) -> None:
    batches.append([event["eventType"] for event in events])
    for event in events:
        EmailNotification.objects.create(
            key=f"{event['eventId']}:batch", event_id=event["eventId"], subject="", body=""
        )
        if event["eventType"] == "test.batch.bad":
            raise RuntimeError("cannot take this one")


@pytest.mark.django_db(transaction=True)
def test_a_batch_subscriber_gets_a_pass_events_in_one_call_then_one_at_a_time_after_a_failure(settings):
    settings.OFFERHUB_EVENT_RETRY_BASE_SECONDS = 3600
    batches.clear()
    with transaction.atomic():
        good = [publish("test.batch.a"), publish("test.batch.b")]
    assert batches == [["test.batch.a", "test.batch.b"]]
    batches.clear()
    with transaction.atomic():
        ok, bad, later = publish("test.batch.c"), publish("test.batch.bad"), publish("test.batch.d")
    # The list failed: the pass was redone and the events handed one at a time up to the bad one.
    assert batches == [["test.batch.c", "test.batch.bad", "test.batch.d"], ["test.batch.c"], ["test.batch.bad"]]
    keys = set(EmailNotification.objects.values_list("key", flat=True))
    assert keys == {f"{event.event_id}:batch" for event in [*good, ok]}
    state = SubscriberCursor.objects.get(name="tests.passes.batch")
    assert state.position == Event.objects.get(pk=ok.pk).position and state.failures == 1
    assert bad.event_id in state.last_error and later.event_id not in keys


@pytest.mark.django_db(transaction=True)
def test_the_order_emails_of_a_pass_take_one_read_and_one_insert():
    from marketplace.models import Order
    from tests.factories import UserFactory

    buyer, seller = UserFactory(email="b@example.test"), UserFactory(email="s@example.test")
    orders = [Order.objects.create(buyer=buyer, seller=seller, amount=10_000_000, title=f"T{n}") for n in range(2)]
    with transaction.atomic():
        for order in orders:  # committed without a task: delivered below, in one pass
            Event.objects.create(
                type="order.released", aggregate_type="Order", aggregate_id=order.public_id, payload={}
            )
            Event.objects.create(
                type="order.refunded", aggregate_type="Order", aggregate_id=order.public_id, payload={}
            )
    with CaptureQueriesContext(connection) as queries:
        events_deliver()
    sql = [q["sql"] for q in queries.captured_queries]
    assert len([s for s in sql if s.startswith("INSERT INTO offerhub_emailnotification")]) == 1
    assert len([s for s in sql if s.startswith('SELECT "marketplace_order"')]) == 1
    assert sorted(m.subject for m in mail.outbox) == sorted(
        [f"You've been paid for T{n}" for n in range(2)] + [f"Refund for T{n}" for n in range(2)]
    )


@pytest.mark.django_db(transaction=True)
def test_a_delivery_rolled_back_inside_the_publishing_transaction_does_not_spare_its_commit_a_dispatch():
    """A delivery that ran inside the transaction (eager tasks, a lease released in one) and was
    rolled back with a savepoint delivered nothing: the commit must still dispatch the event,
    not leave it unpositioned for the minute sweeper."""
    with transaction.atomic():
        publish("test.other")  # cursors exist and stand at the end
    with transaction.atomic():
        event = publish()
        try:
            with transaction.atomic():
                events_deliver()  # positions the event, runs subscribers...
                raise RuntimeError("...and is rolled back")
        except RuntimeError:
            pass
    assert Event.objects.get(pk=event.pk).position is not None  # dispatched at the commit
    # the first call's writes were rolled back with it; the second is the delivery the commit dispatched
    assert calls["writer"] == [event.event_id, event.event_id]


@pytest.mark.django_db(transaction=True)
def test_a_writer_that_swallows_its_database_error_is_blamed_not_the_next_one(settings):
    """Without savepoints, the next writer's first statement fails in the transaction the
    swallower left aborted; the careful redo asks it again and blames the one that failed."""
    settings.OFFERHUB_EVENT_RETRY_BASE_SECONDS = 3600
    with transaction.atomic():
        publish("test.other")
    with transaction.atomic():
        event = Event.objects.create(type="test.swallows", aggregate_type="Test", aggregate_id="t", payload={})
    events_deliver()
    position = Event.objects.get(pk=event.pk).position
    delivered = SubscriberCursor.objects.get(name="tests.swallows.b_innocent")
    assert (delivered.position, delivered.failures) == (position, 0)
    assert EmailNotification.objects.filter(key=f"{event.event_id}:innocent").exists()
    blamed = SubscriberCursor.objects.get(name="tests.swallows.a_swallower")
    assert blamed.position < position and blamed.failures == 1


@pytest.mark.django_db(transaction=True)
def test_a_sequencer_that_waited_for_another_positions_after_what_that_one_committed():
    """The lock and the positioning are one statement (a function): the positioning, run after
    the lock was taken, sees the positions the sequencer it waited for committed meanwhile."""
    import threading

    from offerhub.events import SEQUENCER_LOCK, events_sequence

    first, second = (  # written without a dispatch: both wait for a position
        Event.objects.create(type=kind, aggregate_type="T", aggregate_id="1", payload={})
        for kind in ("test.sequence.one", "test.sequence.two")
    )
    locked, release, results = threading.Event(), threading.Event(), []

    def other_sequencer():  # holds the lock while it positions the first event
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEQUENCER_LOCK])
                cursor.execute("SELECT COALESCE(MAX(position), 0) FROM offerhub_event")
                end = cursor.fetchone()[0]
                Event.objects.filter(pk=first.pk).update(position=end + 1)
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    def sequencer():
        try:
            with CaptureQueriesContext(connection) as queries:
                results.append(events_sequence())
            results.append(len([q for q in queries.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]))
        finally:
            connection.close()

    holder = threading.Thread(target=other_sequencer)
    holder.start()
    assert locked.wait(30)
    waiter = threading.Thread(target=sequencer)
    waiter.start()
    for _ in range(300):  # until it waits for the lock (bounded)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                break
        threading.Event().wait(0.05)
    release.set()
    holder.join(30)
    waiter.join(30)
    assert results == [1, 1]  # the second event positioned, in one statement
    one, two = Event.objects.get(pk=first.pk).position, Event.objects.get(pk=second.pk).position
    assert two == one + 1


@pytest.mark.django_db(transaction=True)
def test_a_row_update_is_made_with_the_blocks_rows_or_first_when_a_statement_reads_its_table():
    """outbox_row_update: in the statement of the block's audit rows and events; before any
    statement that names its table (nothing reads the row unwritten); dropped with a savepoint
    rolled back; refused (ConcurrentTransition) when its state check finds the row changed."""
    from django_fsm import ConcurrentTransition

    from offerhub.services import outbox_row_update

    row = EmailNotification.objects.create(key="deferred", event_id="evt", subject="before", body="")
    rows = EmailNotification.objects.filter(pk=row.pk)
    with transaction.atomic():
        with CaptureQueriesContext(connection) as queries, outbox_batched():
            outbox_row_update(rows, {"subject": "with the rows"}, expect=1)
            publish("test.batch.deferred")
            audit_record(action="a.deferred", resource_type="T", resource_id="1", actor_type="SYSTEM", actor_id="t")
        assert len(queries) == 1, [q["sql"][:60] for q in queries.captured_queries]
        assert EmailNotification.objects.get(pk=row.pk).subject == "with the rows"

        with CaptureQueriesContext(connection) as queries, outbox_batched():
            outbox_row_update(rows, {"subject": "read meanwhile"})
            assert EmailNotification.objects.get(pk=row.pk).subject == "read meanwhile"  # written first
            publish("test.batch.after")
        assert len(queries) == 3  # the update, the read, the event

        with outbox_batched():
            try:
                with transaction.atomic():
                    outbox_row_update(rows, {"subject": "undone"})
                    raise RuntimeError
            except RuntimeError:
                pass
            publish("test.batch.kept")
        assert EmailNotification.objects.get(pk=row.pk).subject == "read meanwhile"

        # Queued before a savepoint whose block reads the row and is rolled back: the update was
        # the caller's, made before the savepoint, and stays.
        with outbox_batched():
            outbox_row_update(rows, {"subject": "before the savepoint"}, expect=1)
            try:
                with transaction.atomic():
                    assert EmailNotification.objects.get(pk=row.pk).subject == "before the savepoint"
                    raise RuntimeError
            except RuntimeError:
                pass
            publish("test.batch.savepoint")
        assert EmailNotification.objects.get(pk=row.pk).subject == "before the savepoint"

    with pytest.raises(ConcurrentTransition), transaction.atomic(), outbox_batched():
        outbox_row_update(rows.filter(subject="not what it is"), {"subject": "stale"}, expect=1)
        publish("test.batch.refused")
    assert EmailNotification.objects.get(pk=row.pk).subject == "before the savepoint"
    assert not Event.objects.filter(type="test.batch.refused").exists()
    assert connection.execute_wrappers == []  # the guard is gone with its block
