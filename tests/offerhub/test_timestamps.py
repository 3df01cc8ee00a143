"""offerhub.postgresql's timestamptz loader: psycopg's own (C) parser where Django installs the
pure-Python one, giving exactly what Django's gives: the instant, in UTC. (The reads are checked
on either backend: they must agree.)"""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import DataError, connection
from hypothesis import given, settings
from hypothesis import strategies as st

from offerhub.postgresql.base import UtcTimestamptzLoader

pytestmark = pytest.mark.django_db

ZONES = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))


def read(sql, *params):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def test_django_s_cursors_keep_it():
    if connection.settings_dict["ENGINE"] != "offerhub.postgresql":
        pytest.skip("Django's own backend (no pool, e.g. behind PgBouncer): Django's loader")
    with connection.cursor() as cursor:
        assert cursor.cursor.adapters.get_loader(1184, 0) is UtcTimestamptzLoader  # timestamptz, text


@settings(max_examples=200, deadline=None)
@given(moment=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=ZONES))
def test_every_instant_reads_back_in_utc(moment):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's loader")
    value = read("SELECT %s::timestamptz", moment)
    assert value == moment and value.tzinfo is UTC
    assert value.utcoffset() == timedelta(0) and value.replace(tzinfo=None) == moment.astimezone(UTC).replace(
        tzinfo=None
    )


def test_text_from_another_zone_and_the_limits():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's loader")
    assert read("SELECT '2026-03-01 12:30:15.123456+05:30'::timestamptz") == datetime(
        2026, 3, 1, 7, 0, 15, 123456, tzinfo=UTC
    )
    assert read("SELECT '9999-12-31 23:59:59.999999+00'::timestamptz") == datetime(
        9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC
    )
    for beyond in ("infinity", "-infinity"):  # as Django's loader: an error that names the value
        with pytest.raises(DataError, match=beyond):
            read(f"SELECT '{beyond}'::timestamptz")
