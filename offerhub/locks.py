"""Locks that span processes and commits: PostgreSQL advisory locks (a thread lock on SQLite)."""

import contextlib
import contextvars
import threading
import time
import zlib

from django.db import connection


class LockTimeout(Exception):
    pass


_held: contextvars.ContextVar[int] = contextvars.ContextVar("advisory_locks_held", default=0)
_after_release: contextvars.ContextVar[tuple] = contextvars.ContextVar("after_locks_released", default=())


def after_locks_released(func) -> None:
    """Run `func` now, or once the advisory locks held here are all released (work that must
    not lengthen a lock others wait for, such as delivering events)."""
    if not _held.get():
        func()
    elif func not in _after_release.get():
        _after_release.set((*_after_release.get(), func))


@contextlib.contextmanager
def _holding():
    token = _held.set(_held.get() + 1)
    try:
        yield
    finally:
        _held.reset(token)
        if not _held.get() and _after_release.get():
            pending = _after_release.get()
            _after_release.set(())
            for func in pending:
                func()


_local_locks: dict[tuple[int, int], threading.RLock] = {}
_local_locks_guard = threading.Lock()


def lock_key(value: int | str) -> int:
    """A stable 32-bit key for a string (a Stellar address); ints are used as they are."""
    return value if isinstance(value, int) else zlib.crc32(value.encode()) - 2**31


@contextlib.contextmanager
def advisory_lock(namespace: int, key: int | str, *, timeout: float = 120.0):
    """Hold the (namespace, key) lock for the block; it is session-level, so it survives the
    commits made inside (a signed transaction's hash is committed before it is sent)."""
    key = lock_key(key)
    if connection.vendor == "postgresql":
        deadline = time.monotonic() + timeout
        with connection.cursor() as cursor:
            while True:
                cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [namespace, key])
                if cursor.fetchone()[0]:
                    break
                if time.monotonic() > deadline:
                    raise LockTimeout(f"lock {namespace}:{key} is busy")
                time.sleep(0.05)
        with _holding():
            try:
                yield
            finally:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [namespace, key])
        return
    with _local_locks_guard:
        lock = _local_locks.setdefault((namespace, key), threading.RLock())  # re-entrant, as PostgreSQL's are
    if not lock.acquire(timeout=timeout):
        raise LockTimeout(f"lock {namespace}:{key} is busy")
    with _holding():
        try:
            yield
        finally:
            lock.release()
