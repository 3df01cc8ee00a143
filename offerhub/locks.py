"""Locks that span processes and commits: lease rows with a fencing token (offerhub.leases).

`lease_lock("escrow:42", timeout=30)` waits up to `timeout` for the named lease, holds it for
the block (TTL `LOCK_TTL`, renewed by `Lease.renew()` / `Lease.fence()`) and releases it at the
end. Nothing is held by the database session between statements, so the locks work behind a
transaction-pooling PgBouncer; a holder killed mid-block (kill -9) stops renewing, and its
lease is taken over once it expires. A holder that stalls past its TTL can find its lease
taken: the writes that must happen only under the lock call `lease.fence()` inside their
transaction, which refuses (LeaseLost) once another claim has the lease.
"""

import contextlib
import contextvars
import logging
import random
import time
from collections.abc import Iterator
from datetime import timedelta

from offerhub.leases import Lease, job_lease_holder, job_lease_release, lease_claim, lease_claim_with, lease_taken

logger = logging.getLogger(__name__)

# Long enough for the work a lock covers between renewals; short enough that a crashed holder
# blocks the others for two minutes at most.
LOCK_TTL = timedelta(seconds=120)
# Waiting claims poll with a growing back-off, capped: holds are short, waiters many.
FIRST_POLL_SECONDS = 0.005
MAX_POLL_SECONDS = 0.1


class LockTimeout(Exception):
    pass


_held: contextvars.ContextVar[dict[str, Lease]] = contextvars.ContextVar("lease_locks_held", default={})  # noqa: B039
_after_release: contextvars.ContextVar[tuple] = contextvars.ContextVar("after_locks_released", default=())


def after_locks_released(func) -> None:
    """Run `func` now, or once the locks held here are all released (work that must not
    lengthen a lock others wait for, such as delivering events)."""
    if not _held.get():
        func()
    elif func not in _after_release.get():
        _after_release.set((*_after_release.get(), func))


def held_lease(name: str) -> Lease | None:
    """The lease this context holds under `name`, if it does."""
    return _held.get().get(name)


def lease_wait(
    *, name: str, holder: str, timeout: float, ttl: timedelta = LOCK_TTL, first_with: tuple[str, list] | None = None
) -> Lease:
    """Claim the lease, polling until `timeout` seconds have passed (LockTimeout). `first_with`:
    a statement the first try runs with its claim (offerhub.leases.lease_claim_with): its rows are
    the lease's `first_rows` when that try took it, else None (the caller does that work itself)."""
    deadline = time.monotonic() + timeout
    pause = FIRST_POLL_SECONDS
    first = True
    while True:
        # The first try claims at once (usually free: one statement); later ones read first, so
        # that polling a held lease spends no transaction id per poll.
        rows = None
        if first and first_with is not None:
            token, rows = lease_claim_with(name=name, holder=holder, ttl=ttl, then=first_with)
        elif first or not lease_taken(name=name, holder=holder):
            token = lease_claim(name=name, holder=holder, ttl=ttl)
        else:
            token = None
        first = False
        if token is not None:
            lease = Lease(name=name, holder=holder, ttl=ttl, token=token)
            lease.first_rows = rows
            return lease
        left = deadline - time.monotonic()
        if left <= 0:
            raise LockTimeout(f"lock {name} is busy")
        time.sleep(min(left, pause * (1 + random.random() / 2)))  # noqa: S311  (jitter, not security)
        pause = min(pause * 2, MAX_POLL_SECONDS)


@contextlib.contextmanager
def lease_lock(
    name: str, *, timeout: float, ttl: timedelta = LOCK_TTL, first_with: tuple[str, list] | None = None
) -> Iterator[Lease]:
    """Hold the lease `name` for the block, waiting up to `timeout` seconds for it (LockTimeout).

    `first_with`: see lease_wait (a block that shares a held lease gets no `first_rows`).

    Re-entrant: a block inside one holding the same name shares its lease. Released at the end
    even if the block raised; a release that fails (a broken connection) lets it expire. Take it
    outside any transaction: a claim inside one is seen by others only once that commits."""
    held = held_lease(name)
    if held is not None:
        held.first_rows = None
        yield held
        return
    lease = lease_wait(name=name, holder=job_lease_holder(), timeout=timeout, ttl=ttl, first_with=first_with)
    token = _held.set({**_held.get(), name: lease})
    try:
        yield lease
    finally:
        _held.reset(token)
        try:
            job_lease_release(name=name, holder=lease.holder)
        except Exception:  # a broken connection: the lease expires on its own
            logger.exception("could not release the lease on %s", name)
        if not _held.get() and _after_release.get():  # only once the lease is free for others
            pending = _after_release.get()
            _after_release.set(())
            for func in pending:  # each on its own: one failing must not keep the others from running
                try:
                    func()
                except Exception:
                    logger.exception("work queued until the locks were released failed")
