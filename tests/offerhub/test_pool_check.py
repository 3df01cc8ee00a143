"""The pool checks only the connections that sat idle (offerhub.postgresql): a connection the
server dropped while it was idle is never given to a request, and one returned a moment ago is
handed out without a round trip (the bounded trade-off: a request may then meet a connection the
server dropped within that moment, and the pool replaces it)."""

import time

import pytest
from django.conf import settings
from django.db import OperationalError, connections

from offerhub.postgresql.base import DatabaseWrapper

pytestmark = [
    pytest.mark.skipif(
        not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"), reason="pools PostgreSQL connections"
    ),
    pytest.mark.django_db,
]


@pytest.fixture
def pooled():
    """A pooled connection of the test database, as a deployment's (a pool of its own, of one)."""
    default = connections["default"].settings_dict
    options = {name: value for name, value in default["OPTIONS"].items() if name != "pool"}
    options["pool"] = {"min_size": 1, "max_size": 1, "timeout": 5}
    wrapper = DatabaseWrapper({**default, "OPTIONS": options, "CONN_MAX_AGE": 0}, alias="pool-check-test")
    yield wrapper
    wrapper.close()
    wrapper.close_pool()


def backend_pid(wrapper) -> int:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def terminated(pid: int) -> None:
    """The server ends the backend, and it is gone."""
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            # The test runs in a transaction, where pg_stat_activity is read once and kept: each
            # poll drops that snapshot, or a backend still ending at the first read never leaves.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.05)
    raise AssertionError(f"backend {pid} still there")


def test_the_engine_of_a_pooled_deployment():
    if settings.DATABASES["default"]["OPTIONS"].get("pool"):
        assert settings.DATABASES["default"]["ENGINE"] == "offerhub.postgresql"
        assert settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] is False  # the pool checks, not Django


def test_a_connection_dropped_while_idle_is_never_given_to_a_request(pooled, settings):
    settings.DATABASE_POOL_CHECK_IDLE_SECONDS = 0  # every pooled connection counts as idle
    first = backend_pid(pooled)
    pooled.close()  # back to the pool
    terminated(first)
    assert backend_pid(pooled) != first  # the check found it dead: another connection, no error


def test_a_connection_returned_a_moment_ago_is_handed_out_unchecked(pooled, settings):
    settings.DATABASE_POOL_CHECK_IDLE_SECONDS = 3600
    first = backend_pid(pooled)
    pooled.close()
    assert backend_pid(pooled) == first  # the same connection, reused
    pooled.close()
    terminated(first)
    # No check ran (it would have replaced the connection): the request meets the dropped one...
    with pytest.raises(OperationalError):
        backend_pid(pooled)
    pooled.close()
    # ...and the pool has replaced it for the next.
    assert backend_pid(pooled) != first
