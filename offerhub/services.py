"""Platform writes: audit records, outbox events and API keys."""

import contextlib
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from datetime import timedelta
from itertools import pairwise

from django.conf import settings
from django.core.mail import get_connection, send_mail
from django.db import connection, transaction
from django.db.models.signals import post_save
from django.db.models.sql import UpdateQuery
from django.utils import timezone

from offerhub.correlation import correlation_id_get, idempotency_key_var, in_task_var
from offerhub.events import event_dispatch_hook_register
from offerhub.ids import random_alnum
from offerhub.leases import db_clock
from offerhub.locks import after_locks_released
from offerhub.models import ApiKey, AuditLog, EmailNotification, Event

logger = logging.getLogger(__name__)

REDACTED = "[REDACTED]"
_SENSITIVE_KEY = re.compile(r"secret|password|passwd|token|api_?key|apikey|authorization|email|seed|private", re.I)
# API keys and Stellar secret seeds: fixed prefixes and a bounded repeat, so no position of
# a text costs more than 56 steps.
_SECRET_IN_WORD = re.compile(r"ohk_(?:live|test|tok)_\S|S[A-Z2-7]{55}")
_WHITESPACE = re.compile(r"(\s+)")


def _word_has_email(word: str) -> bool:
    """`local@domain.tld` inside a word: a non-empty part before an "@" and, up to the next
    "@", a dot with something on each side. One split and one pass, linear in the word's
    length (a backtracking pattern retried from every position was quadratic)."""
    parts = word.split("@")
    return any(local and "." in domain[1:-1] for local, domain in pairwise(parts))


def _redact_text(text: str) -> str:
    """Replace each whitespace-separated word holding an e-mail address, API key or seed."""
    parts = _WHITESPACE.split(text)  # words at even indexes, the whitespace between at odd ones
    for index in range(0, len(parts), 2):
        if _word_has_email(parts[index]) or _SECRET_IN_WORD.search(parts[index]):
            parts[index] = REDACTED
    return "".join(parts)


def redact(value):
    """Strip secrets, API keys and e-mail addresses from a payload before it is stored."""
    if isinstance(value, dict):
        return {key: REDACTED if _SENSITIVE_KEY.search(str(key)) else redact(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return _redact_text(value)
    return value


def atomic_joined(func):
    """Run `func` in the caller's transaction when there is one (no savepoint: two statements
    saved per call), else in a transaction of its own. Only for functions that raise before
    they write (their checks come first), so an error leaves nothing of theirs to undo."""

    @functools.wraps(func)
    def run(*args, **kwargs):
        with transaction_joined():
            return func(*args, **kwargs)

    return run


@contextlib.contextmanager
def transaction_joined():
    """The caller's transaction when there is one (no savepoint), else a transaction of its own."""
    if transaction.get_connection().in_atomic_block:
        yield
    else:
        with transaction.atomic():
            yield


class _Outbox(threading.local):
    """Audit rows and events written inside `outbox_batched()` on this thread, not inserted yet:
    (marker, row) pairs. Each marker is an on_commit hook of its own that does nothing: Django
    drops the hooks of a savepoint rolled back, so a row whose marker is gone was undone."""

    depth = 0
    pending: list = []
    # Row updates made with the block's rows (outbox_row_update): (marker, queryset, values, table).
    updates: list = []
    flushing = False


_outbox = _Outbox()


def _marker() -> None:
    """What an outbox row's on_commit marker runs: nothing."""


@contextlib.contextmanager
def outbox_batched():
    """Inside the caller's transaction, insert the audit rows and events written in this block
    with one statement when it ends (one INSERT per table on other databases) instead of one
    per row, in the order they were written. Nested blocks join the outermost one; an error leaving the outermost one
    drops them with the transaction. Outside a transaction, rows are written at once."""
    if not transaction.get_connection().in_atomic_block:
        yield
        return
    outermost = _outbox.depth == 0
    if outermost:
        _outbox.pending, _outbox.updates = [], []
    _outbox.depth += 1
    try:
        yield
    except BaseException:
        if outermost:
            _outbox.pending, _outbox.updates = [], []
        raise
    finally:
        _outbox.depth -= 1
        if outermost and _updates_guard in connection.execute_wrappers:
            connection.execute_wrappers.remove(_updates_guard)
    if outermost:
        _outbox_flush()


def _alive() -> set[int]:
    return {id(func) for _, func, _ in transaction.get_connection().run_on_commit}


def _outbox_flush() -> None:
    pending, _outbox.pending = _outbox.pending, []
    alive = _alive()
    rows = [row for marker, row in pending if id(marker) in alive]  # not in a savepoint rolled back
    updates = _updates_taken(alive)
    audits = [row for row in rows if isinstance(row, AuditLog)]
    events = [row for row in rows if isinstance(row, Event)]
    if connection.vendor == "postgresql" and sum(map(bool, (audits, events, updates))) >= 2:
        _outbox_insert_together(audits, events, updates)
        return
    _updates_checked(updates, updates_together([(queryset, values) for queryset, values, _ in updates]))
    if audits:
        AuditLog.objects.bulk_create(audits)
    if events:
        Event.objects.bulk_create(events)


def outbox_row_update(queryset, values: dict, *, expect: int | None = None) -> None:
    """`queryset.update(**values)`, made with the audit rows and events of the `outbox_batched()`
    block around it (in their statement: one fewer), or at once outside one. For a row the caller
    holds locked and writes last in the block: any statement that names its table before the
    block ends (or a savepoint) makes the pending updates first, so nothing reads the row unwritten. `expect`:
    how many rows it must update (ConcurrentTransition if not: a state check, as a save's)."""
    if not (_outbox.depth and transaction.get_connection().in_atomic_block):
        _updates_checked([(queryset, values, expect)], [queryset.update(**values)])
        return
    table = queryset.model._meta.db_table
    if any(pending[3] == table for pending in _outbox.updates):
        _updates_flush_now()  # one update per table in a statement (it would not see the other's change)
    marker = functools.partial(_marker)
    transaction.on_commit(marker)
    _outbox.updates.append((marker, queryset, values, table, expect))
    if _updates_guard not in connection.execute_wrappers:
        connection.execute_wrappers.append(_updates_guard)


def outbox_save(instance, fields: tuple[str, ...] | None = None) -> None:
    """instance.save() of a row the caller holds locked and writes last in its `outbox_batched()`
    block (of `fields`, else every column), made with the block's audit rows and events
    (outbox_row_update). A django-fsm ConcurrentTransitionMixin model keeps its save's check
    (only while the row has the state it was read with); post_save's listeners are told."""
    model = type(instance)
    initial = getattr(instance, "_ConcurrentTransitionMixin__initial_states", {})  # save()'s state filter
    values = {}
    for field in model._meta.concrete_fields:
        if not field.primary_key and (fields is None or field.name in fields):
            field.pre_save(instance, add=False)  # auto_now fields = now, as save() sets them
            values[field.attname] = getattr(instance, field.attname)
    outbox_row_update(model._base_manager.filter(pk=instance.pk, **initial), values, expect=1)
    if initial:
        instance._update_initial_state()  # as save() leaves it
    post_save.send(
        sender=model, instance=instance, created=False, update_fields=fields, raw=False, using=instance._state.db
    )


def _updates_taken(alive: set[int]) -> list[tuple]:
    """The pending row updates not undone by a savepoint rolled back: (queryset, values, expect)."""
    updates, _outbox.updates = _outbox.updates, []
    return [(queryset, values, expect) for marker, queryset, values, _, expect in updates if id(marker) in alive]


def _updates_checked(updates: list[tuple], counts: list[int]) -> None:
    for (queryset, _, expect), count in zip(updates, counts, strict=True):
        if expect is not None and count != expect:
            from django_fsm import ConcurrentTransition

            raise ConcurrentTransition(f"{queryset.model.__name__}: the row's state changed since it was read")


def _updates_flush_now() -> None:
    updates = _updates_taken(_alive())
    _outbox.flushing = True
    try:
        _updates_checked(updates, updates_together([(queryset, values) for queryset, values, _ in updates]))
    finally:
        _outbox.flushing = False


def _updates_guard(execute, sql, params, many, context):
    """Before a statement that names the table of a pending row update: make the updates first.
    Before a savepoint too: made inside it, a rollback to it would undo updates queued outside."""
    if _outbox.updates and not _outbox.flushing:
        tables = {pending[3] for pending in _outbox.updates}
        if sql.startswith("SAVEPOINT") or any(re.search(rf"\b{table}\b", sql) for table in tables):
            _updates_flush_now()
    return execute(sql, params, many, context)


# Each row's unique key comes back with its id, so ids are matched by key, not by row order.
_OUTBOX_KEYS = {AuditLog: "public_id", Event: "event_id"}


def _outbox_insert_together(audits: list[AuditLog], events: list[Event], updates: list[tuple] = ()) -> None:
    """The audit rows, the events and the row updates in one statement (PostgreSQL's
    data-modifying WITH): one round trip instead of one per table. Values are prepared as
    bulk_create prepares them."""
    parts, params, by_key, selects = [], [], {}, []
    for n, (queryset, values, _) in enumerate(updates):
        query = queryset.query.chain(UpdateQuery)
        query.add_update_values(values)
        sql, update_params = query.get_compiler(queryset.db).as_sql()
        parts.append(f"u{n} AS ({sql} RETURNING 1)")
        params += update_params
        selects.append(f"SELECT {-1 - n}, (SELECT COUNT(*) FROM u{n}), ''")  # noqa: S608 (a name)
    for n, (model, rows) in enumerate(((AuditLog, audits), (Event, events))):
        if not rows:
            continue
        fields = [field for field in model._meta.concrete_fields if not field.primary_key]
        key = _OUTBOX_KEYS[model]
        row_sql = f"({', '.join(['%s'] * len(fields))})"
        for row in rows:
            params += [field.get_db_prep_save(field.pre_save(row, add=True), connection) for field in fields]
            by_key[(n, getattr(row, key))] = row
        columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
        parts.append(
            f"w{n} AS (INSERT INTO {model._meta.db_table} ({columns})"  # noqa: S608 (the models' tables)
            f" VALUES {', '.join([row_sql] * len(rows))} RETURNING id, {key})"
        )
        selects.append(f"SELECT {n}, id, {key} FROM w{n}")  # noqa: S608 (names)
    sql = f"WITH {', '.join(parts)} {' UNION ALL '.join(selects)}"
    counts = [0] * len(updates)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for n, pk, key in cursor.fetchall():
            if n < 0:
                counts[-1 - n] = pk
                continue
            row = by_key[(n, key)]
            row.pk, row._state.adding, row._state.db = pk, False, connection.alias
    _updates_checked(updates, counts)


def updates_together(updates: list[tuple]) -> list[int]:
    """`queryset.update(**values)` of each (queryset, values), in one statement on PostgreSQL (a
    data-modifying WITH; one per update elsewhere): how many rows each updated. For rows the
    caller holds locked, each touched by one update only (one statement sees none of its own
    changes), and values that are plain (no F() of a row another update changes)."""
    if connection.vendor != "postgresql" or len(updates) < 2:
        return [queryset.update(**values) for queryset, values in updates]
    parts, params = [], []
    for n, (queryset, values) in enumerate(updates):
        query = queryset.query.chain(UpdateQuery)
        query.add_update_values(values)
        sql, update_params = query.get_compiler(queryset.db).as_sql()
        parts.append(f"u{n} AS ({sql} RETURNING 1)")
        params += update_params
    counts = ", ".join(f"(SELECT COUNT(*) FROM u{n})" for n in range(len(updates)))  # noqa: S608 (names)
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(parts)} SELECT {counts}", params)
        return list(cursor.fetchone())


def _write(row):
    """Insert `row` now, or keep it for the end of the `outbox_batched()` block around it."""
    if _outbox.depth and transaction.get_connection().in_atomic_block:
        marker = functools.partial(_marker)  # a distinct object per row
        transaction.on_commit(marker)
        _outbox.pending.append((marker, row))
    else:
        row.save(force_insert=True)
    return row


def audit_record(
    *,
    action: str,
    resource_type: str,
    resource_id: str,
    actor_type: str,
    actor_id: str,
    payload_before: dict | None = None,
    payload_after: dict | None = None,
    result: str = AuditLog.Result.SUCCESS,
    user_id: str = "",
    idempotency_key: str = "",
    marketplace_id: str = "",
) -> AuditLog:
    """Append one audit row in the caller's transaction, stamped with the correlation id (inside
    `outbox_batched()`, inserted when that block ends)."""
    return _write(
        AuditLog(
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            actor_type=actor_type,
            actor_id=actor_id,
            payload_before=redact(payload_before),
            payload_after=redact(payload_after),
            result=result,
            correlation_id=correlation_id_get() or "",
            user_id=user_id,
            idempotency_key=idempotency_key or idempotency_key_var.get() or "",
            marketplace_id=marketplace_id,
        )
    )


def event_publish(
    *,
    type: str,
    aggregate_type: str,
    aggregate_id: str,
    payload: dict,
    user_id: str = "",
    marketplace_id: str = "",
    causation_id: str = "",
) -> Event:
    """Write an outbox event in the caller's transaction (inside `outbox_batched()`, inserted
    when that block ends); subscribers hear of it only after commit."""
    event = _write(
        Event(
            type=type,
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            payload=payload,
            correlation_id=correlation_id_get() or "",
            causation_id=causation_id,
            user_id=user_id,
            marketplace_id=marketplace_id,
        )
    )
    event_dispatch_hook_register()  # one delivery task per transaction, after commit
    return event


# --- E-mail notifications ---------------------------------------------------------------


class _EmailBatch:
    """The e-mails one transaction wrote, sent together once it commits (one on_commit hook)."""

    def __init__(self):
        self.pks: list[int] = []
        self.claimed: dict[int, tuple] = {}  # written claimed by this worker (email_notifications_write)
        self.claimed_at: float | None = None  # when the first of them was (time.monotonic())

    def __call__(self) -> None:
        pks, claimed, claimed_at = list(self.pks), dict(self.claimed), self.claimed_at
        if in_task_var.get():
            # Already on a worker: send from here (not while it holds an escrow's or an account's lock).
            after_locks_released(
                lambda: (
                    email_notifications_send(notification_pks=pks),
                    _emails_deliver(claimed, claimed_at=claimed_at),
                )
            )
            return
        from offerhub.tasks import email_notifications_send_task  # the tasks module imports this one

        # Rows are claimed as written only on a worker (email_notifications_write): none here. Any
        # that were would wait for their claim to lapse, then the sweeper.
        email_notifications_send_task.delay([*pks, *claimed])


def email_notification_send_on_commit(
    *, notification_pk: int, claim: tuple | None = None, claimed_at: float | None = None
) -> None:
    """Send the e-mail row `notification_pk` once the current transaction commits: every e-mail
    a transaction writes goes in one batch, sent right there when a Celery task committed it,
    else by one task. A broker outage or a crash leaves the rows unsent, for the sweeper
    (offerhub.tasks.email_notifications_sweep); a pk whose row was rolled back sends nothing.
    `claim`: (token, recipients, subject, body) of a row this worker claimed as it wrote it, at
    `claimed_at` (time.monotonic())."""
    conn = transaction.get_connection()
    # A batch of the same savepoints only: a savepoint rolled back drops the hooks registered
    # inside it, and with them the e-mails it wrote (one added to an outer batch would be sent).
    here = set(conn.savepoint_ids)
    batch = next((func for sids, func, _ in conn.run_on_commit if isinstance(func, _EmailBatch) and sids == here), None)
    fresh = batch is None
    if fresh:
        batch = _EmailBatch()
    if claim is None:
        batch.pks.append(notification_pk)
    else:
        batch.claimed[notification_pk] = claim
        batch.claimed_at = claimed_at if batch.claimed_at is None else min(batch.claimed_at, claimed_at)
    if fresh:
        transaction.on_commit(batch, robust=True)  # outside a transaction: runs at once, filled above


def email_notifications_write(emails: list[tuple[str, str, list[str], str, str]]) -> None:
    """Write e-mails (key, eventId, recipients, subject, body), each once per key, with one
    statement, and send them once the transaction commits. On a worker, which sends them itself
    right after, each row is claimed as it is written (EMAIL_CLAIM_TTL), so that sending needs
    no claim statement of its own; a worker killed first leaves the claim to lapse, for the sweeper."""
    if not emails:
        return
    table = EmailNotification._meta.db_table
    claim = bool(in_task_var.get())
    now = timezone.now()
    columns = "key, event_id, recipients, subject, body, created_at"
    row = "%s, %s, %s, %s, %s, %s"
    params, clock = [], []
    claimed_at = time.monotonic()  # no later than the claims' start: their age is counted from it
    if claim:
        _, until, clock = db_clock(EMAIL_CLAIM_TTL)
        columns, row = f"{columns}, claimed_until", f"{row}, {until}"
    for key, event_id, recipients, subject, body in emails:
        params += [key, event_id, json.dumps(recipients), subject, body, now, *clock[-1:]]
    values = ", ".join([f"({row})"] * len(emails))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) VALUES {values}"  # noqa: S608 (the model's table, the clock's SQL)
            " ON CONFLICT (key) DO NOTHING RETURNING id, key, claimed_until",
            params,
        )
        written = cursor.fetchall()  # not those an earlier delivery of the event wrote
    content = {key: (recipients, subject, body) for key, _, recipients, subject, body in emails}
    for pk, key, token in written:
        claimed = (token, *content[key]) if claim else None
        email_notification_send_on_commit(notification_pk=pk, claim=claimed, claimed_at=claimed_at)


# A sender's claim on the e-mails it sends: longer than a batch's slowest message takes (each
# SMTP step may wait EMAIL_TIMEOUT), short enough that a killed sender's e-mails go out again
# within minutes. A batch still sending when a quarter of it has gone renews what is left.
EMAIL_CLAIM_TTL = timedelta(minutes=5)


def _email_claims_sql(claims: dict[int, object]) -> tuple[str, list]:
    """A condition true for the rows still claimed by these claims (pk: the claim's end, which
    a later claim only moves forward: it is the claim's token)."""
    sql = " OR ".join(["(id = %s AND claimed_until = %s)"] * len(claims))
    return f"({sql})", [value for claim in claims.items() for value in claim]


def _email_notifications_claim(pks: list[int]) -> dict[int, tuple]:
    """Claim the unsent, unclaimed (or lapsed) rows of `pks` in one committed statement:
    pk -> (claim token, recipients, subject, body). A concurrent claim of the same row waits
    for this one's commit, then finds it claimed and skips it."""
    table = EmailNotification._meta.db_table
    now, until, params = db_clock(EMAIL_CLAIM_TTL)
    placeholders = ", ".join(["%s"] * len(pks))
    sql = (
        f"UPDATE {table} SET claimed_until = {until}"  # noqa: S608 (the model's table, the clock's SQL)
        f" WHERE id IN ({placeholders}) AND sent_at IS NULL AND (claimed_until IS NULL OR claimed_until <= {now})"
        " RETURNING id, claimed_until, recipients, subject, body"
    )
    values = [params[-1], *pks, params[0]] if connection.vendor != "postgresql" else [*params, *pks]
    with connection.cursor() as cursor:  # autocommit: committed before any e-mail is sent
        cursor.execute(sql, values)
        return {pk: (token, recipients, subject, body) for pk, token, recipients, subject, body in cursor.fetchall()}


def _email_notifications_settle(*, sent: list[int], failed: dict[int, object]) -> None:
    """Record a batch's outcome in one statement: `sent` rows are sent (whoever holds them now:
    the e-mail went out); `failed` rows (pk: claim token) are unclaimed for the sweeper, unless
    their claim lapsed and another sender has them."""
    if not sent and not failed:
        return
    table = EmailNotification._meta.db_table
    conditions, params = [], []
    if sent:
        conditions.append(f"id IN ({', '.join(['%s'] * len(sent))})")
        params += sent
    if failed:
        claimed, claimed_params = _email_claims_sql(failed)
        conditions.append(claimed)
        params += claimed_params
    sent_at = f"CASE WHEN id IN ({', '.join(['%s'] * len(sent))}) THEN %s END" if sent else "NULL"
    sent_params = [*sent, timezone.now()] if sent else []
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET sent_at = {sent_at}, claimed_until = NULL"  # noqa: S608 (the model's table)
            f" WHERE sent_at IS NULL AND ({' OR '.join(conditions)})",
            [*sent_params, *params],
        )


def _email_notifications_renew(claims: dict[int, object]) -> dict[int, object]:
    """Push the end of the claims still held to now + EMAIL_CLAIM_TTL: their new tokens (a
    lapsed claim another sender took is gone, and that sender sends it)."""
    if not claims:
        return {}
    table = EmailNotification._meta.db_table
    _, until, params = db_clock(EMAIL_CLAIM_TTL)
    claimed, claimed_params = _email_claims_sql(claims)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET claimed_until = {until} WHERE sent_at IS NULL AND {claimed}"  # noqa: S608 (the model's table)
            " RETURNING id, claimed_until",
            [params[-1], *claimed_params],
        )
        return dict(cursor.fetchall())


def email_notifications_send(*, notification_pks: list[int]) -> int:
    """Send the unsent e-mails of `notification_pks` once each; return how many were sent.

    One committed UPDATE claims them until now + EMAIL_CLAIM_TTL, returning what to send; they
    are sent outside any transaction, holding no lock nor a transaction open while the mail
    server answers, and one more UPDATE marks them sent. A second sender skips rows claimed and
    not lapsed. A sender killed before that last UPDATE leaves its claims to lapse, and the
    sweeper sends them again (at least once); one the server refuses is unclaimed at once, for
    the sweeper. Called inside a transaction, it sends once that commits (returning 0 now)."""
    pks = list(notification_pks)
    if not pks:
        return 0
    if connection.in_atomic_block:
        # Not while the caller's transaction is open: its rows would stay locked for the mail
        # server's time (and its claim unseen by others until it commits).
        transaction.on_commit(functools.partial(email_notifications_send, notification_pks=pks), robust=True)
        return 0
    return _emails_deliver(_email_notifications_claim(pks))


def _emails_deliver(claims: dict[int, tuple], *, claimed_at: float | None = None) -> int:
    """Send the e-mails of `claims` (pk -> (claim token, recipients, subject, body)), this
    sender's since `claimed_at` (time.monotonic(); now when None), and record the outcome
    (email_notifications_send). Claims older than a quarter of theirs are renewed first."""
    if not claims:
        return 0
    if connection.in_atomic_block:
        transaction.on_commit(functools.partial(_emails_deliver, claims, claimed_at=claimed_at), robust=True)
        return 0
    tokens = {pk: claim[0] for pk, claim in claims.items()}
    sent: list[int] = []
    failed: dict[int, object] = {}
    renewed = time.monotonic() if claimed_at is None else claimed_at
    total_sent = 0
    mailer = get_connection()
    for pk in sorted(claims):
        if time.monotonic() - renewed >= EMAIL_CLAIM_TTL.total_seconds() / 4:
            # A slow server: record what is done, then keep the rest claimed for the time they take.
            _email_notifications_settle(sent=sent, failed=failed)
            sent, failed = [], {}
            tokens = _email_notifications_renew({key: tokens[key] for key in tokens if key >= pk})
            renewed = time.monotonic()
        if pk not in tokens:
            continue  # its claim lapsed and another sender took it
        _, recipients, subject, body = claims[pk]
        try:
            recipients = json.loads(recipients) if isinstance(recipients, str) else recipients
            send_mail(subject, body, None, recipients, fail_silently=False, connection=mailer)
        except Exception:  # the mail server refused or is down: this one waits for the sweeper
            logger.exception("could not send e-mail notification %s", pk)
            failed[pk] = tokens[pk]
        else:
            sent.append(pk)
            total_sent += 1
    _email_notifications_settle(sent=sent, failed=failed)
    return total_sent


# --- API keys ----------------------------------------------------------------------

KEY_SECRET_HEX_LENGTH = 48
_KEY_PATTERN = re.compile(r"^ohk_(live|test)_key_([0-9A-Za-z]{32})_([0-9a-f]{48})$")


def api_key_hash(*, salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def api_key_parse(raw: str) -> tuple[str, str] | None:
    """Split `ohk_{env}_key_{32}_{48hex}` into (key id, secret), or None if malformed."""
    match = _KEY_PATTERN.match(raw)
    if not match:
        return None
    return f"key_{match.group(2)}", match.group(3)


def api_key_secret_matches(*, api_key: ApiKey, secret: str) -> bool:
    expected = api_key_hash(salt=api_key.secret_salt, secret=secret)
    return hmac.compare_digest(expected, api_key.secret_hash)


@transaction.atomic
def api_key_create(
    *, name: str, scopes: list[str], actor_type: str, actor_id: str, marketplace_id: str = ""
) -> tuple[ApiKey, str]:
    """Create a key and return it with its full secret, which is never retrievable again."""
    environment = settings.OFFERHUB_API_KEY_ENVIRONMENT
    alnum = random_alnum()
    secret = secrets.token_hex(KEY_SECRET_HEX_LENGTH // 2)
    salt = secrets.token_hex(16)
    api_key = ApiKey.objects.create(
        id=f"key_{alnum}",
        name=name,
        environment=environment,
        scopes=list(dict.fromkeys(scopes)),
        marketplace_id=marketplace_id,
        secret_salt=salt,
        secret_hash=api_key_hash(salt=salt, secret=secret),
        created_by=f"{actor_type}:{actor_id}",
    )
    audit_record(
        action="api_key.created",
        resource_type="ApiKey",
        resource_id=api_key.id,
        actor_type=actor_type,
        actor_id=actor_id,
        payload_after={"name": name, "scopes": api_key.scopes, "marketplaceId": marketplace_id or None},
        marketplace_id=marketplace_id,
    )
    return api_key, f"ohk_{environment}_key_{alnum}_{secret}"


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey, actor_type: str, actor_id: str) -> ApiKey:
    """Revoke a key at once on every node (the API key cache of each process forgets it)."""
    from offerhub.api.authentication import api_key_cache_forget  # it imports this module

    api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if api_key.revoked_at is None:
        # This process stops using its cached row now and again after commit (a request may have
        # read the row, still active, in between); other processes hear it on commit.
        api_key_cache_forget(api_key.id)
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        audit_record(
            action="api_key.revoked",
            resource_type="ApiKey",
            resource_id=api_key.id,
            actor_type=actor_type,
            actor_id=actor_id,
            payload_before={"revokedAt": None},
            payload_after={"revokedAt": api_key.revoked_at.isoformat()},
            marketplace_id=api_key.marketplace_id,
        )
        key_id = api_key.id
        transaction.on_commit(lambda: _api_key_streams_end(key_id), robust=True)
    return api_key


def _api_key_streams_end(key_id: str) -> None:
    from offerhub.api.authentication import api_key_cache_forget
    from offerhub.event_stream import api_key_revoked_notify  # the stream's module imports the models

    api_key_cache_forget(key_id)
    api_key_revoked_notify(key_id=key_id)


def api_key_touch(*, api_key: ApiKey) -> None:
    """Maintain lastUsedAt without writing on every request: at most once a minute."""
    now = timezone.now()
    if api_key.last_used_at and (now - api_key.last_used_at).total_seconds() < 60:
        return
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now
