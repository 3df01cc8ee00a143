"""The event outbox: written in the caller's transaction, dispatched only after commit."""

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.utils import timezone

from offerhub.consumers import UserEventsConsumer
from offerhub.events import event_subscriber
from offerhub.models import Event
from offerhub.services import event_publish
from offerhub.tasks import events_dispatch_pending

received: list[dict] = []


@event_subscriber("test.*")
def remember(event: dict) -> None:
    received.append(event)


@event_subscriber("test.boom")
def explode(event: dict) -> None:
    raise RuntimeError("a broken subscriber must not stop the others")


@pytest.fixture(autouse=True)
def _clear_received():
    received.clear()


def publish(event_type="test.happened", **extra) -> Event:
    return event_publish(type=event_type, aggregate_type="Test", aggregate_id="t1", payload={"n": 1}, **extra)


@pytest.mark.django_db(transaction=True)
def test_event_in_a_rolled_back_transaction_is_never_dispatched():
    with pytest.raises(RuntimeError), transaction.atomic():
        publish()
        raise RuntimeError("roll back")
    assert not Event.objects.exists()
    assert received == []
    assert events_dispatch_pending() == 0
    assert received == []


@pytest.mark.django_db(transaction=True)
def test_event_is_dispatched_after_commit_not_before():
    with transaction.atomic():
        event = publish(user_id="usr_x")
        assert received == []  # still inside the transaction
    assert [item["eventId"] for item in received] == [event.event_id]
    domain_event = received[0]
    assert domain_event["eventType"] == "test.happened"
    assert domain_event["aggregateType"] == "Test"
    assert domain_event["metadata"]["userId"] == "usr_x"
    assert domain_event["occurredAt"].endswith("Z")
    event.refresh_from_db()
    assert event.dispatched_at is not None


@pytest.mark.django_db(transaction=True)
def test_ids_are_monotonic_and_a_failing_subscriber_does_not_stop_others():
    with transaction.atomic():
        first = publish("test.boom")
        second = publish("test.after")
    assert second.id > first.id
    assert [item["eventType"] for item in received] == ["test.boom", "test.after"]


@pytest.mark.django_db
def test_sweeper_dispatches_events_whose_post_commit_dispatch_was_lost():
    # Inside the test transaction on_commit never fires: like a process that died after commit.
    event = publish()
    assert events_dispatch_pending() >= 1
    assert [item["eventId"] for item in received] == [event.event_id]
    assert events_dispatch_pending() == 0  # dispatched once
    assert received == [received[0]]


@pytest.mark.django_db(transaction=True)
def test_user_receives_their_events_over_websocket(user):
    other_user_event = {"type": "test.private", "aggregate_type": "Test", "aggregate_id": "x", "payload": {}}

    def publish_both():
        with transaction.atomic():
            event_publish(**other_user_event, user_id="usr_someone_else")
            event_publish(
                type="test.mine", aggregate_type="Test", aggregate_id="y", payload={"ok": True}, user_id=user.public_id
            )

    async def scenario():
        communicator = WebsocketCommunicator(UserEventsConsumer.as_asgi(), "/ws/events/")
        communicator.scope["user"] = user
        connected, _ = await communicator.connect()
        assert connected
        await database_sync_to_async(publish_both)()
        message = await communicator.receive_json_from(timeout=5)
        assert message["eventType"] == "test.mine"
        assert message["payload"] == {"ok": True}
        assert await communicator.receive_nothing(timeout=0.3)
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_anonymous_websocket_is_refused():
    from django.contrib.auth.models import AnonymousUser

    async def scenario():
        communicator = WebsocketCommunicator(UserEventsConsumer.as_asgi(), "/ws/events/")
        communicator.scope["user"] = AnonymousUser()
        connected, code = await communicator.connect()
        assert not connected
        assert code == 4401

    async_to_sync(scenario)()


@pytest.mark.django_db
def test_reaper_drops_delivered_events_past_retention_only(settings):
    from offerhub.tasks import events_reap_expired

    settings.OFFERHUB_EVENT_RETENTION_DAYS = 30
    old_delivered, recent = publish(), publish()
    events_dispatch_pending()  # positions them and every subscriber takes them
    old_pending = publish()  # committed, never positioned: no subscriber had it yet
    long_ago = timezone.now() - timedelta(days=31)
    Event.objects.filter(pk__in=[old_delivered.pk, old_pending.pk]).update(occurred_at=long_ago)
    assert events_reap_expired() == 1
    assert set(Event.objects.values_list("pk", flat=True)) == {old_pending.pk, recent.pk}


@pytest.mark.django_db
def test_the_reaper_keeps_the_newest_event_so_positions_are_never_handed_out_twice(settings):
    """A quiet month: every event is past retention. The newest stays, so the next event gets a
    position after it, not its number again (cursors and streams past it would skip the new one)."""
    from offerhub.tasks import events_reap_expired

    settings.OFFERHUB_EVENT_RETENTION_DAYS = 30
    publish()
    last = publish()
    events_dispatch_pending()
    Event.objects.update(occurred_at=timezone.now() - timedelta(days=31))
    assert events_reap_expired() == 1
    kept = Event.objects.get()
    assert kept.pk == last.pk
    after = publish()
    events_dispatch_pending()
    assert Event.objects.get(pk=after.pk).position == kept.position + 1
