"""Leases: a row per name (offerhub.models.JobLease) that one holder has until it expires.

Single-flight periodic jobs use them here (`job_lease`); offerhub.locks builds the
cross-process locks on them (one drive per escrow, one submission per Stellar account).

A run claims its job's lease with one statement (INSERT … ON CONFLICT (name) DO UPDATE …
WHERE the lease expired OR is ours … RETURNING), renews it as it progresses (a page, an
item) and releases it at its end. A run that finds the lease held returns at once: the
holder does the work, and the next beat tick tries again. A holder killed mid-run (kill -9,
a lost node) stops renewing, so its lease expires and the next run takes it over; a holder
that stalls past its lease finds it taken on its next renewal (LeaseLost) and stops there.

Each statement commits on its own and holds nothing between statements, so leases work
behind a transaction-pooling PgBouncer, unlike session-level advisory locks. Times are the
database's clock (clock_timestamp()), so nodes whose clocks disagree still agree on expiry.

Every claim adds one to the row's `claims`: the number a claim returns is its fencing token.
A write that must happen only while the lease is still ours runs `lease_fence` in its own
transaction: it renews the lease only if holder and token are unchanged, and keeps the row
locked until that transaction ends, so no takeover can slip in between the check and the commit.
"""

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import DateTimeField, Func, Q
from django.db.models.sql import UpdateQuery
from django.utils import timezone

from offerhub.models import JobLease

logger = logging.getLogger(__name__)


class LeaseLost(Exception):
    """The lease expired and another run took it over: this run must stop its work."""


def job_lease_holder() -> str:
    """Who claims: the node, process and thread, plus a random part unique to this run."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{secrets.token_hex(4)}"[:200]


def _db_now():
    """The database's clock, which every node shares (Python's time on other databases)."""
    if connection.vendor == "postgresql":
        return Func(template="clock_timestamp()", output_field=DateTimeField())
    return timezone.now()


def db_clock(ttl: timedelta) -> tuple[str, str, list]:
    """SQL for now and for now + ttl, and their parameters: the database's clock on PostgreSQL,
    so that every node agrees on when a lease (or a claim) ran out."""
    if connection.vendor == "postgresql":
        return "clock_timestamp()", "clock_timestamp() + make_interval(secs => %s)", [ttl.total_seconds()]
    now = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value  # stored as the ORM stores them, so they compare
    return "%s", "%s", [adapt(now), adapt(now + ttl)]


def _claim_sql(now: str, expires: str) -> str:
    """The claim (lease_claim): taken when free, expired or already the holder's; RETURNING the
    fencing token. Only constants are formatted in (the table, the clock's SQL); values
    (name, holder, the clock's) are parameters."""
    return f"""
        INSERT INTO {JobLease._meta.db_table} AS lease (name, holder, claimed_at, renewed_at, expires_at, claims)
        VALUES (%s, %s, {now}, {now}, {expires}, 1)
        ON CONFLICT (name) DO UPDATE SET
            holder = excluded.holder, claimed_at = excluded.claimed_at, renewed_at = excluded.renewed_at,
            expires_at = excluded.expires_at, released_at = NULL, claims = lease.claims + 1
        WHERE lease.expires_at <= excluded.claimed_at OR lease.holder = excluded.holder
        RETURNING claims
    """  # noqa: S608


def job_lease_claim(*, name: str, holder: str, ttl: timedelta) -> bool:
    """Take the job's lease for `ttl` if it is free, expired or already `holder`'s; True if taken."""
    return lease_claim(name=name, holder=holder, ttl=ttl) is not None


def lease_claim(*, name: str, holder: str, ttl: timedelta) -> int | None:
    """Take the lease for `ttl` if it is free, expired or already `holder`'s: its fencing token
    (the row's claim count, which only grows), or None when someone else holds it.

    One atomic statement: two claims at once (two beats, two workers) never both win."""
    now, expires, params = db_clock(ttl)
    if connection.vendor == "postgresql":
        values = [name, holder, *params]
    else:
        values = [name, holder, params[0], params[0], params[1]]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_claim_sql(now, expires), values)
        row = cursor.fetchone()
        return None if row is None else row[0]


def lease_claim_with(*, name: str, holder: str, ttl: timedelta, then: tuple[str, list]) -> tuple[int | None, list]:
    """lease_claim, and in the same statement (PostgreSQL) the work the claim is for: `then` is
    a data-modifying statement with RETURNING whose condition `{claimed}` holds only when the
    lease was taken. Returns (the fencing token or None, `then`'s rows: none when not taken).
    Its writes commit with the claim: they are made only by the holder.

    `then` reads in the snapshot the statement started with. Had it waited on the lease row for
    a holder that wrote and let go meanwhile, it would read rows older than those writes; but
    such a claim fails: the release set the lease's expiry to its own time, after this claim's
    clock was read (tests/offerhub/test_lease_locks.py)."""
    if connection.vendor != "postgresql":
        return lease_claim(name=name, holder=holder, ttl=ttl), None
    now, expires, params = db_clock(ttl)
    then_sql, then_params = then
    then_sql = then_sql.replace("{claimed}", "EXISTS (SELECT 1 FROM claimed)")
    sql = f"""
        WITH claimed AS ({_claim_sql(now, expires)}), then_rows AS ({then_sql})
        SELECT claimed.claims, then_rows.* FROM claimed LEFT JOIN then_rows ON true
    """  # noqa: S608 (constants and the caller's statement; values are parameters)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [name, holder, *params, *then_params])
        rows = cursor.fetchall()
    if not rows:
        return None, []
    return rows[0][0], [row[1:] for row in rows if any(value is not None for value in row[1:])]


def lease_free_claims(*, name: str) -> int | None:
    """The lease's claim count if nobody holds it now (never claimed: 0), else None. A later
    claim returning this + 1 proves nobody held the lease in between. A holder past its expiry
    counts as holding: until another claim takes the lease, it may still fence and send."""
    return lease_look(name=name)[0]


def lease_look(*, name: str) -> tuple[int | None, bool]:
    """lease_free_claims(), and whether a claim would have to wait now (a holder whose lease
    has not expired), in one read."""
    busy = Q(holder__gt="", expires_at__gt=_db_now())
    row = (
        JobLease.objects.filter(name=name)
        .annotate(held=Q(holder__gt=""), busy=busy)
        .values_list("claims", "held", "busy")
        .first()
    )
    if row is None:
        return 0, False
    claims, held, busy = row
    return (None if held else claims), busy


def lease_free_claims_sql(name_sql: str) -> str:
    """lease_free_claims of the lease named by the SQL expression `name_sql`, as a column of
    another query (one statement fewer): read it with lease_free_claims_of()."""
    return (
        f"(SELECT CASE WHEN free.holder > '' THEN -1 ELSE free.claims END"  # noqa: S608 (the model's table)
        f" FROM {JobLease._meta.db_table} free WHERE free.name = {name_sql})"
    )


def lease_free_claims_of(value: int | None) -> int | None:
    """What lease_free_claims returns, from the column lease_free_claims_sql selects."""
    if value is None:
        return 0  # never claimed
    return None if value < 0 else value


def lease_taken(*, name: str, holder: str) -> bool:
    """Whether another holder has the lease now: a plain read, so that waiting does not try the
    claim's upsert on every poll (each try spends a transaction id, even when it changes nothing)."""
    return JobLease.objects.filter(name=name, expires_at__gt=_db_now()).exclude(holder__in=("", holder)).exists()


def job_lease_renew(*, name: str, holder: str, ttl: timedelta) -> bool:
    """Push the lease's expiry to now + `ttl` if `holder` still has it; False if it was lost."""
    now = _db_now()
    return bool(JobLease.objects.filter(name=name, holder=holder).update(renewed_at=now, expires_at=now + ttl))


def lease_fence(*, name: str, holder: str, token: int, ttl: timedelta) -> bool:
    """Inside the transaction that makes a holder's write: renew the lease if this claim (holder
    and fencing token) still has it, and keep its row locked until the transaction ends; False
    if it was taken over, and the write must not be made."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("lease_fence() guards a write: call it inside that write's transaction")
    now = _db_now()
    renewed = JobLease.objects.filter(name=name, holder=holder, claims=token).update(
        renewed_at=now, expires_at=now + ttl
    )
    return bool(renewed)


_FENCED_WRITE = """
WITH mine (name, holder, claims, ttl) AS (VALUES {mine}),
locked AS MATERIALIZED (
    SELECT name FROM {leases} WHERE name IN (SELECT name FROM mine) ORDER BY name FOR UPDATE
),
fenced AS (
    UPDATE {leases} lease
    SET renewed_at = clock_timestamp(), expires_at = clock_timestamp() + make_interval(secs => mine.ttl)
    FROM mine WHERE lease.name = mine.name AND lease.holder = mine.holder AND lease.claims = mine.claims
        AND lease.name IN (SELECT name FROM locked)
    RETURNING lease.name
),
written AS ({write} AND (SELECT COUNT(*) FROM fenced) = %s RETURNING 1)
SELECT ARRAY(SELECT name FROM fenced), (SELECT COUNT(*) FROM written)
"""


def leases_fenced_update(leases: list["Lease"], queryset, **values) -> int:
    """`lease.fence()` of every lease of `leases`, then `queryset.update(**values)` only if each
    still holds, in one statement (PostgreSQL; one per lease and the UPDATE elsewhere). Inside
    the write's transaction: the leases' rows are locked in name order (the order separate
    fences take) and kept until it ends. LeaseLost, nothing written, when one was taken over
    (the caller's transaction must roll back); else how many rows were updated."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("leases_fenced_update() guards a write: call it inside that write's transaction")
    if connection.vendor != "postgresql" or not leases:
        for lease in leases:
            lease.fence()
        return queryset.update(**values)
    update = queryset.query.chain(UpdateQuery)
    update.add_update_values(values)
    write, write_params = update.get_compiler(queryset.db).as_sql()
    params = []
    for lease in leases:
        params += [lease.name, lease.holder, lease.token or 0, lease.ttl.total_seconds()]
    sql = _FENCED_WRITE.format(
        mine=", ".join(["(%s::varchar, %s::varchar, %s::integer, %s::float8)"] * len(leases)),
        leases=JobLease._meta.db_table,
        write=write,
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *write_params, len(leases)])
        fenced, written = cursor.fetchone()
    for lease in leases:
        if lease.name not in fenced:
            raise LeaseLost(f"the lease on {lease.name} expired and was taken over")
    now = time.monotonic()
    for lease in leases:
        lease.renewed = now
    return written


def job_lease_release(*, name: str, holder: str) -> bool:
    """Free the lease now if `holder` still has it (the next run need not wait for expiry)."""
    now = _db_now()
    return bool(JobLease.objects.filter(name=name, holder=holder).update(holder="", released_at=now, expires_at=now))


@dataclass
class Lease:
    """A claimed lease: `renew()` it as the job progresses, or call `progress()` per item (it
    renews once a quarter of the lease has gone by, so a fast loop writes rarely)."""

    name: str
    holder: str
    ttl: timedelta
    renewed: float = field(default_factory=time.monotonic)
    token: int | None = None  # the claim's fencing token, when the claim returned one
    first_rows: list | None = None  # what a claim made with its work returned (offerhub.locks.lease_wait)

    def renew(self) -> None:
        if self.token is not None:
            with transaction.atomic():
                self.fence()
            return
        if not job_lease_renew(name=self.name, holder=self.holder, ttl=self.ttl):
            raise LeaseLost(f"the lease on {self.name} expired and was taken over")
        self.renewed = time.monotonic()

    def fence(self) -> None:
        """Inside a write's transaction: renew, and hold the row until it commits (LeaseLost if
        another claim took the lease over: the write must not be made)."""
        if not lease_fence(name=self.name, holder=self.holder, token=self.token or 0, ttl=self.ttl):
            raise LeaseLost(f"the lease on {self.name} expired and was taken over")
        self.renewed = time.monotonic()

    def progress(self) -> None:
        if time.monotonic() - self.renewed >= self.ttl.total_seconds() / 4:
            self.renew()


_current: ContextVar[Lease | None] = ContextVar("job_lease", default=None)


def job_lease_progress() -> None:
    """For loops in services a leased job calls: renew the running job's lease when due
    (LeaseLost ends the job). Outside a leased job (an admin's manual run) it does nothing."""
    lease = _current.get()
    if lease is not None:
        lease.progress()


@contextlib.contextmanager
def job_lease(*, name: str, ttl: timedelta, holder: str | None = None) -> Iterator[Lease | None]:
    """Run the block as the job's only run: yields a Lease, or None when another run holds it
    (the caller returns without waiting). A LeaseLost raised in the block ends it quietly:
    the run that took the lease over carries on from the state this one committed."""
    holder = holder or job_lease_holder()
    if not job_lease_claim(name=name, holder=holder, ttl=ttl):
        logger.info("job %s skipped: another run holds its lease", name)
        yield None
        return
    lease = Lease(name=name, holder=holder, ttl=ttl)
    token = _current.set(lease)
    try:
        yield lease
    except LeaseLost:
        logger.warning("job %s stopped: its lease expired and was taken over", name)
    finally:
        _current.reset(token)
        try:
            job_lease_release(name=name, holder=holder)
        except Exception:  # a broken connection: the lease expires on its own
            logger.exception("could not release the lease on %s", name)
