"""E-mails are claimed in a committed statement, sent outside any transaction with no row locked,
then recorded (offerhub.services.email_notifications_send): never twice by concurrent senders,
again by the sweeper once the claim of a sender killed mid-batch lapses, at once for the
sweeper when the mail server refuses."""

import threading
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.db import OperationalError, connection, transaction
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from psycopg import pq

from offerhub.correlation import in_task_var
from offerhub.models import EmailNotification
from offerhub.services import (
    EMAIL_CLAIM_TTL,
    _email_notifications_claim,
    _emails_deliver,
    email_notification_send_on_commit,
    email_notifications_send,
    email_notifications_write,
)
from offerhub.tasks import email_notifications_sweep

observed: list[dict] = []
during_send: list = []  # a function the backend calls once, while its first message is being sent


def _elsewhere(func):
    """Run `func` on another thread, hence another database connection, and return its result."""
    result = {}

    def run():
        try:
            result["value"] = func()
        except Exception as error:  # shown by the assertion that reads it
            result["error"] = error
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)  # a guard against a hang, not a timing
    assert not thread.is_alive()
    if "error" in result:
        raise result["error"]
    return result["value"]


def _row_seen_from_another_connection(subject: str) -> dict:
    """Whether another connection can lock the row now (FOR UPDATE NOWAIT), and what it reads."""

    def look():
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    "SELECT sent_at IS NULL, claimed_until > clock_timestamp() FROM offerhub_emailnotification"
                    " WHERE subject = %s FOR UPDATE NOWAIT",
                    [subject],
                )
                unsent, claimed = cursor.fetchone()
                return {"locked": True, "unsent": unsent, "claimed": claimed}
        except OperationalError:  # could not obtain lock
            return {"locked": False}

    return _elsewhere(look)


class ObservingBackend(EmailBackend):
    """The locmem backend that, while each message is sent, records whether a transaction is
    open on the sender's connection and how another connection sees the message's row."""

    def send_messages(self, messages):
        for message in messages:
            observed.append(
                {
                    "subject": message.subject,
                    "in_atomic_block": connection.in_atomic_block,
                    "idle": connection.connection.info.transaction_status == pq.TransactionStatus.IDLE,
                    **_row_seen_from_another_connection(message.subject),
                }
            )
            while during_send:
                during_send.pop()()
        return super().send_messages(messages)


class RefusingBackend(EmailBackend):
    def send_messages(self, messages):
        raise OSError("connection refused")


class Killed(BaseException):
    """Not an Exception: nothing after the send runs, as when the worker is killed there."""


class KilledBackend(EmailBackend):
    def send_messages(self, messages):
        raise Killed


@pytest.fixture(autouse=True)
def _observed():
    observed.clear()
    during_send.clear()
    yield
    observed.clear()
    during_send.clear()


def _rows(count: int, *, old: bool = False) -> list[EmailNotification]:
    rows = [
        EmailNotification.objects.create(
            key=f"k{n}", event_id=f"evt_{n}", recipients=[f"to{n}@example.test"], subject=f"S{n}", body="B"
        )
        for n in range(count)
    ]
    if old:  # past the sweeper's grace
        EmailNotification.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    return rows


def _assert_sent_outside_transactions(subjects: list[str]) -> None:
    assert sorted(seen["subject"] for seen in observed) == subjects
    for seen in observed:
        assert seen == {
            "subject": seen["subject"],
            "in_atomic_block": False,
            "idle": True,  # no transaction open on the server either
            "locked": True,  # another connection locks the row: the sender holds no lock on it
            "unsent": True,
            "claimed": True,  # the claim was committed before the send
        }


@pytest.mark.django_db(transaction=True)
def test_emails_are_sent_outside_any_transaction_with_their_rows_unlocked_then_recorded(settings):
    settings.EMAIL_BACKEND = f"{__name__}.ObservingBackend"
    rows = _rows(2)
    assert email_notifications_send(notification_pks=[row.pk for row in rows]) == 2
    _assert_sent_outside_transactions(["S0", "S1"])
    assert sorted(message.subject for message in mail.outbox) == ["S0", "S1"]
    for row in EmailNotification.objects.all():
        assert row.sent_at is not None and row.claimed_until is None


@pytest.mark.django_db(transaction=True)
def test_a_send_asked_for_inside_a_transaction_happens_after_its_commit_outside_it(settings):
    settings.EMAIL_BACKEND = f"{__name__}.ObservingBackend"
    with transaction.atomic():  # the e-mails of one transaction: sent by its on-commit batch
        for row in _rows(2):
            email_notification_send_on_commit(notification_pk=row.pk)
        assert not mail.outbox
    _assert_sent_outside_transactions(["S0", "S1"])
    observed.clear()
    third = EmailNotification.objects.create(key="k2", event_id="evt_2", recipients=["x@example.test"], subject="S2")
    with transaction.atomic():  # a direct call inside a transaction (a lock released in one)
        assert email_notifications_send(notification_pks=[third.pk]) == 0
        assert len(mail.outbox) == 2
    _assert_sent_outside_transactions(["S2"])
    assert len(mail.outbox) == 3
    with transaction.atomic():  # rolled back: its row is gone, nothing is sent
        undone = EmailNotification.objects.create(key="k3", event_id="evt_3", recipients=["y@example.test"])
        email_notification_send_on_commit(notification_pk=undone.pk)
        transaction.set_rollback(True)
    assert email_notifications_send(notification_pks=[undone.pk]) == 0
    assert len(mail.outbox) == 3


@pytest.mark.django_db(transaction=True)
def test_a_second_sender_while_the_first_is_sending_sends_nothing(settings):
    settings.EMAIL_BACKEND = f"{__name__}.ObservingBackend"
    rows = _rows(3, old=True)
    pks = [row.pk for row in rows]
    others = []
    # While the first e-mail is with the mail server: a second worker with the same batch, then the sweeper.
    during_send.append(
        lambda: others.extend(
            [_elsewhere(lambda: email_notifications_send(notification_pks=pks)), _elsewhere(email_notifications_sweep)]
        )
    )
    assert email_notifications_send(notification_pks=pks) == 3
    assert others == [0, 0]  # all three were claimed: neither sent (nor the sweeper queued) any
    assert sorted(message.subject for message in mail.outbox) == ["S0", "S1", "S2"]
    assert email_notifications_send(notification_pks=pks) == 0
    assert email_notifications_sweep() == 0
    assert len(mail.outbox) == 3


@pytest.mark.django_db(transaction=True)
def test_two_senders_started_together_send_each_email_once():
    pks = [row.pk for row in _rows(20)]
    start = threading.Barrier(2)
    counts = []

    def sender():
        start.wait(30)
        return email_notifications_send(notification_pks=pks)

    threads = [threading.Thread(target=lambda: counts.append(_elsewhere(sender))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(counts) == 20 and len(counts) == 2
    assert sorted(message.subject for message in mail.outbox) == sorted(f"S{n}" for n in range(20))


@pytest.mark.django_db(transaction=True)
def test_an_email_the_server_refuses_is_unclaimed_at_once_for_the_sweeper(settings):
    settings.EMAIL_BACKEND = f"{__name__}.RefusingBackend"
    (row,) = _rows(1, old=True)
    assert email_notifications_send(notification_pks=[row.pk]) == 0
    row.refresh_from_db()
    assert row.sent_at is None and row.claimed_until is None
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert email_notifications_sweep() == 1  # the next sweep, not once a claim lapsed
    assert [message.subject for message in mail.outbox] == ["S0"]
    row.refresh_from_db()
    assert row.sent_at is not None and row.claimed_until is None


@pytest.mark.django_db(transaction=True)
def test_a_sender_killed_mid_send_leaves_a_claim_the_sweeper_takes_up_once_it_lapsed(settings):
    settings.EMAIL_BACKEND = f"{__name__}.KilledBackend"
    (row,) = _rows(1, old=True)
    with pytest.raises(Killed):
        email_notifications_send(notification_pks=[row.pk])
    row.refresh_from_db()
    assert row.sent_at is None and row.claimed_until > timezone.now()
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert email_notifications_sweep() == 0  # a live claim: its sender may still be at it
    assert email_notifications_send(notification_pks=[row.pk]) == 0
    assert not mail.outbox
    EmailNotification.objects.filter(pk=row.pk).update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert email_notifications_sweep() == 1
    assert [message.subject for message in mail.outbox] == ["S0"]
    row.refresh_from_db()
    assert row.sent_at is not None and row.claimed_until is None
    assert email_notifications_sweep() == 0


@pytest.mark.django_db(transaction=True)
def test_a_slow_batch_renews_its_claims_and_skips_those_another_sender_took_once_lapsed(settings, monkeypatch):
    from offerhub import services

    # Claims that lapse at once: every e-mail of the batch renews the claims of those left.
    monkeypatch.setattr(services, "EMAIL_CLAIM_TTL", timedelta(0))
    settings.EMAIL_BACKEND = f"{__name__}.ObservingBackend"
    pks = [row.pk for row in _rows(3)]
    others = []
    # While the first e-mail is sent, its claim lapsed: another sender takes all three and sends them.
    during_send.append(lambda: others.append(_elsewhere(lambda: email_notifications_send(notification_pks=pks))))
    assert email_notifications_send(notification_pks=pks) == 1
    assert others == [3]
    # A lapsed claim is at least once: the first e-mail went twice; the others once, the first
    # sender having found them taken when it renewed.
    assert sorted(message.subject for message in mail.outbox) == ["S0", "S0", "S1", "S2"]
    assert not EmailNotification.objects.filter(Q(sent_at__isnull=True) | Q(claimed_until__isnull=False)).exists()


@pytest.mark.django_db(transaction=True)
def test_a_batch_renewing_its_claims_sends_every_email_once(settings, monkeypatch):
    from offerhub import services

    monkeypatch.setattr(services, "EMAIL_CLAIM_TTL", timedelta(0))
    pks = [row.pk for row in _rows(3)]
    settings.EMAIL_BACKEND = f"{__name__}.RefusingBackend"
    assert email_notifications_send(notification_pks=pks) == 0
    # Each refused one is unclaimed with the claim it had then (renewed ones included).
    assert EmailNotification.objects.filter(sent_at__isnull=True, claimed_until__isnull=True).count() == 3
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert email_notifications_send(notification_pks=pks) == 3
    assert sorted(message.subject for message in mail.outbox) == ["S0", "S1", "S2"]
    assert not EmailNotification.objects.filter(Q(sent_at__isnull=True) | Q(claimed_until__isnull=False)).exists()


@pytest.mark.django_db(transaction=True)
def test_on_a_worker_emails_are_claimed_as_written_and_sent_without_a_claim_statement(settings):
    """A Celery task sends the e-mails its transaction wrote right after the commit: written
    claimed, they need no claim of their own (email_notifications_write); a request's are
    written unclaimed, for the task that sends them."""
    settings.EMAIL_BACKEND = f"{__name__}.ObservingBackend"
    token = in_task_var.set(True)
    try:
        with CaptureQueriesContext(connection) as queries, transaction.atomic():
            email_notifications_write([("k0", "evt_0", ["to0@example.test"], "S0", "B")])
            row = EmailNotification.objects.get(key="k0")
            assert row.claimed_until > timezone.now() and row.sent_at is None  # claimed as written
            assert not mail.outbox
    finally:
        in_task_var.reset(token)
    _assert_sent_outside_transactions(["S0"])
    writes = [query["sql"] for query in queries.captured_queries if "offerhub_emailnotification" in query["sql"]]
    assert [sql.split()[0] for sql in writes] == ["INSERT", "SELECT", "UPDATE"]  # written, read here, recorded
    row.refresh_from_db()
    assert row.sent_at is not None and row.claimed_until is None
    # Outside a task the rows are written unclaimed, and whoever sends them claims them.
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    with transaction.atomic():
        email_notifications_write([("k1", "evt_1", ["to1@example.test"], "S1", "B")])
        assert EmailNotification.objects.get(key="k1").claimed_until is None


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_sending_what_it_wrote_claimed_leaves_it_to_the_sweeper(settings):
    settings.EMAIL_BACKEND = f"{__name__}.KilledBackend"
    token = in_task_var.set(True)
    try:
        with pytest.raises(Killed), transaction.atomic():  # killed in the send that follows the commit
            email_notifications_write([("k0", "evt_0", ["to0@example.test"], "S0", "B")])
    finally:
        in_task_var.reset(token)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    EmailNotification.objects.update(created_at=timezone.now() - timedelta(minutes=5))  # past the sweeper's grace
    assert email_notifications_sweep() == 0  # its writer's claim is live: it may still be sending it
    EmailNotification.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert email_notifications_sweep() == 1
    assert [message.subject for message in mail.outbox] == ["S0"]


@pytest.mark.django_db(transaction=True)
def test_an_email_written_in_a_savepoint_rolled_back_is_never_sent(settings):
    """The careful delivery pass calls each subscriber in a savepoint: what one rolled back wrote
    is not sent with what the others wrote."""
    token = in_task_var.set(True)
    try:
        with transaction.atomic():
            with transaction.atomic():
                email_notifications_write([("kept", "evt_0", ["to0@example.test"], "Kept", "B")])
            with pytest.raises(RuntimeError), transaction.atomic():
                email_notifications_write([("undone", "evt_1", ["to1@example.test"], "Undone", "B")])
                raise RuntimeError("this subscriber failed")
    finally:
        in_task_var.reset(token)
    assert [message.subject for message in mail.outbox] == ["Kept"]
    assert list(EmailNotification.objects.values_list("key", flat=True)) == ["kept"]


@pytest.mark.django_db(transaction=True)
def test_claims_older_than_a_quarter_of_theirs_are_renewed_before_sending(settings):
    """Rows claimed as a worker wrote them may wait for its locks before it sends them: a claim
    that may have lapsed by then is renewed first, and one another sender took is left to it."""
    (mine, taken) = _rows(2)
    claims = _email_notifications_claim([mine.pk, taken.pk])
    other = timezone.now() + timedelta(minutes=5)  # a sender that took it once it lapsed
    EmailNotification.objects.filter(pk=taken.pk).update(claimed_until=other)
    written_long_ago = time.monotonic() - EMAIL_CLAIM_TTL.total_seconds()
    assert _emails_deliver(claims, claimed_at=written_long_ago) == 1
    assert [message.subject for message in mail.outbox] == ["S0"]
    taken.refresh_from_db()
    assert taken.sent_at is None and taken.claimed_until == other
