"""Delivery guarantees of the event outbox: commit order, per-subscriber at-least-once with
back-off and dead letters, one task per transaction, e-mail from subscribers, retention."""

import contextlib
import threading
from datetime import timedelta

import pytest
from celery.signals import task_prerun
from django.core import mail
from django.db import connection, transaction
from django.utils import timezone

from marketplace.models import Order
from marketplace.notifications import order_emails
from offerhub.celery import app as celery_app
from offerhub.events import event_dead_letter_retry, event_subscriber, events_deliver, events_sequence
from offerhub.locks import lease_lock
from offerhub.models import EmailNotification, Event, EventDeadLetter, SubscriberCursor
from offerhub.services import event_publish
from offerhub.tasks import email_notifications_sweep, events_dispatch_pending, events_reap_expired
from tests.factories import UserFactory

seen: dict[str, list[str]] = {"gap": [], "steady": [], "flaky_ok": [], "poison_ok": [], "many": []}
attempts: dict[str, int] = {}
poison = {"healed": False}
lock = threading.Lock()


@event_subscriber("test.gap", name="tests.gap")
def gap_reader(event: dict) -> None:
    with lock:
        seen["gap"].append(event["eventId"])


@event_subscriber("test.flaky", name="tests.steady")
def steady(event: dict) -> None:
    seen["steady"].append(event["eventId"])


@event_subscriber("test.flaky", name="tests.flaky")
def flaky(event: dict) -> None:
    attempts[event["eventId"]] = attempts.get(event["eventId"], 0) + 1
    if attempts[event["eventId"]] <= 2:
        raise RuntimeError("down for now")
    seen["flaky_ok"].append(event["eventId"])


@event_subscriber("test.poison*", name="tests.poison")
def poisoned(event: dict) -> None:
    if event["eventType"] == "test.poison" and not poison["healed"]:
        raise ValueError("cannot take this one")
    seen["poison_ok"].append(event["eventId"])


@event_subscriber("test.many", name="tests.many")
def many(event: dict) -> None:
    Event.objects.exists()  # some work of its own on its connection, while others run
    with lock:
        seen["many"].append(event["eventId"])


@event_subscriber("test.write", name="tests.writer")
def writer(event: dict) -> None:
    EmailNotification.objects.create(key=f"{event['eventId']}:kept", event_id=event["eventId"], subject="", body="")


@event_subscriber("test.write", name="tests.broken_writer")
def broken_writer(event: dict) -> None:
    EmailNotification.objects.create(key=f"{event['eventId']}:undone", event_id=event["eventId"], subject="", body="")
    raise RuntimeError("half done")


@pytest.fixture(autouse=True)
def _reset():
    for items in seen.values():
        items.clear()
    attempts.clear()
    poison["healed"] = False


def publish(event_type: str, n: int = 1) -> Event:
    return event_publish(type=event_type, aggregate_type="Test", aggregate_id=f"t{n}", payload={"n": n})


def committed_without_task(event_type: str, count: int) -> list[Event]:
    """Events committed while no post-commit task ran (a crash right after commit)."""
    create = Event.objects.create
    return [create(type=event_type, aggregate_type="Test", aggregate_id="t", payload={}) for _ in range(count)]


@pytest.mark.django_db(transaction=True)
def test_an_event_committing_late_comes_after_one_committed_before_it_and_is_not_skipped():
    """A inserts first (lower id) but commits after B: B is positioned and delivered first,
    then A with a later position; a reader of "position > cursor" misses neither."""
    a_inserted, b_committed = threading.Event(), threading.Event()
    ids = {}

    def transaction_a():
        try:
            with transaction.atomic():
                ids["a"] = publish("test.gap", 1)
                a_inserted.set()
                assert b_committed.wait(30)
        finally:
            connection.close()

    def transaction_b():
        try:
            assert a_inserted.wait(30)
            with transaction.atomic():
                ids["b"] = publish("test.gap", 2)
            # B's own post-commit task ran: B is positioned and delivered while A is still open
            positioned = list(Event.objects.filter(position__isnull=False).values_list("pk", flat=True))
            ids["positioned_before_a_committed"] = positioned
            b_committed.set()
        finally:
            connection.close()

    threads = [threading.Thread(target=transaction_a), threading.Thread(target=transaction_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    a, b = Event.objects.get(pk=ids["a"].pk), Event.objects.get(pk=ids["b"].pk)
    assert a.id < b.id  # insert order
    assert ids["positioned_before_a_committed"] == [b.pk]  # A was invisible, so not positioned
    assert b.position < a.position  # commit order
    assert seen["gap"] == [b.event_id, a.event_id]  # delivered once each, in commit order

    # A reader resuming from B's position (as a stream's Last-Event-ID would) still gets A;
    # one reading by id would have skipped it (A's id is lower than B's).
    assert list(Event.objects.filter(position__gt=b.position).values_list("pk", flat=True)) == [a.pk]
    assert not Event.objects.filter(id__gt=b.id).exists()


@pytest.mark.django_db(transaction=True)
def test_a_subscriber_failing_twice_then_succeeding_takes_the_event_once_and_others_are_unaffected(settings):
    settings.OFFERHUB_EVENT_RETRY_BASE_SECONDS = 0  # due again at once: no waiting in a test
    with transaction.atomic():
        event = publish("test.flaky")
    # after commit: the steady subscriber has it; the flaky one failed once and backs off
    assert seen["steady"] == [event.event_id]
    state = SubscriberCursor.objects.get(name="tests.flaky")
    assert state.failures == 1 and state.next_attempt_at is not None
    assert "down for now" in state.last_error and state.position < Event.objects.get(pk=event.pk).position

    events_dispatch_pending()  # second failure
    assert attempts[event.event_id] == 2 and seen["flaky_ok"] == []
    events_dispatch_pending()  # third attempt succeeds
    events_dispatch_pending()  # nothing left: not handed again

    assert attempts[event.event_id] == 3
    assert seen["flaky_ok"] == [event.event_id]
    assert seen["steady"] == [event.event_id]  # never handed again to the one that succeeded
    state = SubscriberCursor.objects.get(name="tests.flaky")
    assert (state.failures, state.next_attempt_at, state.last_error) == (0, None, "")
    assert state.position == Event.objects.get(pk=event.pk).position
    assert not EventDeadLetter.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_failing_subscriber_undoes_only_its_own_writes_and_backs_off_alone(settings):
    """Both run in the same delivery transaction: the failing one's savepoint is rolled back,
    the other one's writes commit with its cursor."""
    settings.OFFERHUB_EVENT_RETRY_BASE_SECONDS = 3600
    with transaction.atomic():
        event = publish("test.write")
    position = Event.objects.get(pk=event.pk).position
    assert list(EmailNotification.objects.values_list("key", flat=True)) == [f"{event.event_id}:kept"]
    kept = SubscriberCursor.objects.get(name="tests.writer")
    assert (kept.position, kept.failures, kept.next_attempt_at) == (position, 0, None)
    broken = SubscriberCursor.objects.get(name="tests.broken_writer")
    assert broken.position < position and broken.failures == 1 and "half done" in broken.last_error
    assert broken.next_attempt_at > timezone.now()


@pytest.mark.django_db(transaction=True)
def test_a_subscriber_another_worker_holds_is_skipped_not_waited_for():
    gap, many = committed_without_task("test.gap", 1)[0], committed_without_task("test.many", 1)[0]
    assert events_sequence() == 2  # positioned, and the cursors exist (before them)
    held, release = threading.Event(), threading.Event()

    def holder():
        try:
            with transaction.atomic():
                SubscriberCursor.objects.select_for_update().get(name="tests.gap")
                held.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(30)
        events_deliver()  # returns while the other worker still holds tests.gap
        assert seen["many"] == [many.event_id] and seen["gap"] == []
    finally:
        release.set()
        thread.join(60)
    events_deliver()  # as the holder does after releasing it
    assert seen["gap"] == [gap.event_id] and seen["many"] == [many.event_id]


@pytest.mark.django_db(transaction=True)
def test_a_subscriber_backing_off_is_not_retried_before_its_time(settings):
    settings.OFFERHUB_EVENT_RETRY_BASE_SECONDS = 3600
    with transaction.atomic():
        event = publish("test.flaky")
    events_dispatch_pending()
    assert attempts[event.event_id] == 1  # the sweeper left it alone: its next attempt is in an hour
    SubscriberCursor.objects.filter(name="tests.flaky").update(next_attempt_at=timezone.now())
    events_dispatch_pending()
    assert attempts[event.event_id] == 2


@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_at_once_never_hand_an_event_twice_to_a_subscriber():
    events = committed_without_task("test.many", 300)
    start = threading.Barrier(4)

    def dispatcher():
        try:
            start.wait(30)
            events_deliver()
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatcher) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(seen["many"]) == sorted(event.event_id for event in events)  # each exactly once
    assert len(seen["many"]) == len(set(seen["many"]))
    positions = dict(Event.objects.values_list("event_id", "position"))
    assert [positions[event_id] for event_id in seen["many"]] == sorted(positions.values())  # in commit order
    assert SubscriberCursor.objects.get(name="tests.many").position == max(positions.values())


@pytest.mark.django_db(transaction=True)
def test_the_sweeper_delivers_what_committed_while_no_task_ran():
    events = committed_without_task("test.gap", 3)
    assert seen["gap"] == [] and not Event.objects.filter(position__isnull=False).exists()
    events_dispatch_pending()
    assert seen["gap"] == [event.event_id for event in events]
    # positioned but the worker died before the subscribers ran: the sweeper runs them
    later = committed_without_task("test.gap", 1)[0]
    assert events_sequence() == 1
    events_dispatch_pending()
    assert seen["gap"][-1] == later.event_id and len(seen["gap"]) == 4
    events_dispatch_pending()
    assert len(seen["gap"]) == 4


@pytest.mark.django_db(transaction=True)
def test_after_n_failures_the_event_is_parked_and_the_subscriber_goes_on_and_support_retries_it(settings):
    settings.OFFERHUB_EVENT_RETRY_BASE_SECONDS = 0
    settings.OFFERHUB_EVENT_SUBSCRIBER_MAX_FAILURES = 3
    with transaction.atomic():
        bad = publish("test.poison", 1)
        good = publish("test.poison_next", 2)
    assert seen["poison_ok"] == []  # the poison event holds the next one back for now
    events_dispatch_pending()
    assert seen["poison_ok"] == []
    events_dispatch_pending()  # third failure: parked, and the subscriber goes on
    letter = EventDeadLetter.objects.get()
    assert (letter.subscriber, letter.event_id, letter.failures) == ("tests.poison", bad.pk, 3)
    assert "cannot take this one" in letter.last_error and letter.resolved_at is None
    assert seen["poison_ok"] == [good.event_id]
    assert SubscriberCursor.objects.get(name="tests.poison").failures == 0

    assert event_dead_letter_retry(dead_letter=letter) is False  # still failing
    letter.refresh_from_db()
    assert letter.failures == 4 and letter.retried_at is not None and letter.resolved_at is None
    poison["healed"] = True
    assert event_dead_letter_retry(dead_letter=letter) is True
    letter.refresh_from_db()
    assert letter.resolved_at is not None
    assert seen["poison_ok"] == [good.event_id, bad.event_id]


@pytest.mark.django_db(transaction=True)
def test_support_retries_a_dead_letter_from_the_admin(admin_client, settings):
    settings.OFFERHUB_EVENT_RETRY_BASE_SECONDS = 0
    settings.OFFERHUB_EVENT_SUBSCRIBER_MAX_FAILURES = 1
    with transaction.atomic():
        publish("test.poison")
    letter = EventDeadLetter.objects.get()
    page = admin_client.get("/admin/offerhub/eventdeadletter/")
    assert page.status_code == 200 and "tests.poison" in page.content.decode()
    poison["healed"] = True
    answer = admin_client.post(
        "/admin/offerhub/eventdeadletter/", {"action": "retry_dead_letters", "_selected_action": [letter.pk]}
    )
    assert answer.status_code == 302
    letter.refresh_from_db()
    assert letter.resolved_at is not None


@pytest.mark.django_db(transaction=True)
def test_one_delivery_task_per_transaction_however_many_events():
    tasks = []

    def count(sender=None, **kwargs):
        if sender is not None and sender.name == "offerhub.tasks.events_dispatch":
            tasks.append(sender.name)

    task_prerun.connect(count)
    try:
        with transaction.atomic():
            for n in range(5):
                publish("test.gap", n)
        assert len(tasks) == 1
        assert len(seen["gap"]) == 5

        with transaction.atomic():
            try:
                with transaction.atomic():  # a savepoint rolled back takes its event and its hook
                    publish("test.gap", 10)
                    raise RuntimeError("undo")
            except RuntimeError:
                pass
            kept = publish("test.gap", 11)
        assert len(tasks) == 2
        assert seen["gap"][-1] == kept.event_id and len(seen["gap"]) == 6
    finally:
        task_prerun.disconnect(count)


@pytest.mark.django_db(transaction=True)
def test_order_emails_are_sent_from_the_event_once_even_if_it_is_delivered_again():
    buyer, seller = UserFactory(email="buyer@example.test"), UserFactory(email="seller@example.test")
    order = Order.objects.create(buyer=buyer, seller=seller, amount=25 * 10_000_000, title="Logo")
    with transaction.atomic():
        event = event_publish(
            type="order.released",
            aggregate_type="Order",
            aggregate_id=order.public_id,
            payload={"orderId": order.public_id},
        )
    assert [(m.subject, m.to) for m in mail.outbox] == [("You've been paid for Logo", ["seller@example.test"])]
    assert f"/orders/{order.public_id}/" in mail.outbox[0].body
    with transaction.atomic():  # delivered again (at least once): no second e-mail
        order_emails(Event.objects.get(pk=event.pk).as_domain_event())
    assert len(mail.outbox) == 1
    assert EmailNotification.objects.get().sent_at is not None


@pytest.mark.django_db(transaction=True)
def test_an_email_whose_task_was_lost_is_sent_by_the_sweeper():
    notification = EmailNotification.objects.create(
        key="evt_x:order", event_id="evt_x", recipients=["a@example.test"], subject="Hello", body="Body"
    )
    EmailNotification.objects.filter(pk=notification.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    assert email_notifications_sweep() == 1
    assert [m.subject for m in mail.outbox] == ["Hello"]
    assert email_notifications_sweep() == 0
    assert len(mail.outbox) == 1
    EmailNotification.objects.update(sent_at=timezone.now() - timedelta(days=31))
    events_reap_expired()
    assert not EmailNotification.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_events_of_an_existing_order_outlive_the_retention_window(settings):
    settings.OFFERHUB_EVENT_RETENTION_DAYS = 30
    buyer, seller = UserFactory(), UserFactory()
    order = Order.objects.create(buyer=buyer, seller=seller, amount=10_000_000, title="Kept")
    with transaction.atomic():
        kept = event_publish(type="order.created", aggregate_type="Order", aggregate_id=order.public_id, payload={})
        gone = event_publish(type="order.created", aggregate_type="Order", aggregate_id="ord_gone", payload={})
        other = publish("test.gap")
    Event.objects.update(occurred_at=timezone.now() - timedelta(days=31))
    with transaction.atomic():
        fresh = publish("test.gap")  # the newest event, kept whatever its age (positions go on from it)
    assert events_reap_expired() == 2
    assert list(Event.objects.values_list("pk", flat=True)) == [kept.pk, fresh.pk]
    assert {gone.pk, other.pk}.isdisjoint(Event.objects.values_list("pk", flat=True))


@pytest.mark.django_db(transaction=True)
def test_events_a_subscriber_has_not_taken_or_holds_as_dead_letter_are_kept(settings):
    settings.OFFERHUB_EVENT_RETRY_BASE_SECONDS = 3600
    settings.OFFERHUB_EVENT_RETENTION_DAYS = 30
    with transaction.atomic():
        pending = publish("test.flaky")  # tests.flaky fails and backs off: its cursor stays before it
    Event.objects.update(occurred_at=timezone.now() - timedelta(days=31))
    assert events_reap_expired() == 0
    assert Event.objects.filter(pk=pending.pk).exists()


inside_the_lock: dict[str, list] = {}


@celery_app.task(name="tests.publish_in_a_task")
def publish_in_a_task(hold_a_lock: bool) -> None:
    """A task committing an event, as the escrow steps' drive does (under an escrow's lock or not)."""
    with lease_lock("test:publish-in-a-task", timeout=5) if hold_a_lock else contextlib.nullcontext():
        with transaction.atomic():
            publish("test.gap")
        inside_the_lock["seen"] = list(seen["gap"])  # after the commit, before the lock is let go


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("hold_a_lock", [False, True])
def test_a_task_delivers_what_it_commits_itself_after_its_locks_are_released(hold_a_lock):
    """Already on a worker, a task delivers its events right after the commit, through no other
    task; never while it holds a lock (others wait on it), but as soon as it lets go."""
    tasks = []

    def count(sender=None, **kwargs):
        tasks.append(sender.name)

    task_prerun.connect(count)
    try:
        publish_in_a_task.delay(hold_a_lock)
    finally:
        task_prerun.disconnect(count)
    assert tasks == ["tests.publish_in_a_task"]  # no events_dispatch task
    assert len(seen["gap"]) == 1
    assert inside_the_lock["seen"] == ([] if hold_a_lock else seen["gap"])
