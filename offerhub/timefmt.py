"""The API's timestamp format: ISO-8601 UTC, exactly three fractional digits, `Z`."""

import datetime as dt

from django.utils import timezone


def iso_timestamp(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def iso_now() -> str:
    return iso_timestamp(timezone.now())
