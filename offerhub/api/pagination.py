"""Cursor pagination (API.md §1.6): newest first, the cursor is the last item's public id."""

import re
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from offerhub.api.errors import validation_error

DEFAULT_LIMIT = 20
LIMIT_PATTERN = re.compile(r"[0-9]{1,9}")  # not int(): it takes "1_0", spaces and other scripts' digits
CURSOR_PATTERN = re.compile(r"[A-Za-z0-9_]{1,64}")  # every id is prefix_ + letters and digits
MAX_LIMIT = 100


@dataclass
class Page:
    items: list
    has_more: bool
    next_cursor: str | None


def parse_limit(raw, *, default: int = DEFAULT_LIMIT) -> int:
    """`limit` as API.md §1.6 says: 1 or more (ASCII digits), above 100 clamped."""
    if raw is None or raw == "":
        return default
    if not isinstance(raw, int) and not LIMIT_PATTERN.fullmatch(str(raw)):
        raise validation_error([("limit", "must be an integer between 1 and 100")])
    limit = int(raw)
    if limit < 1:
        raise validation_error([("limit", "must be an integer between 1 and 100")])
    return min(limit, MAX_LIMIT)


def page_params(params, *, default_limit: int = DEFAULT_LIMIT) -> tuple[int, str | None]:
    """The page's size and cursor (the last item's public id, or None for the first page)."""
    limit = parse_limit(params.get("limit"), default=default_limit)
    cursor = params.get("cursor") or None
    if cursor is not None and not CURSOR_PATTERN.fullmatch(cursor):
        raise validation_error([("cursor", "must be the id of the last item of a page")])
    return limit, cursor


def paginate(
    queryset: QuerySet, *, params, id_field: str, time_field: str = "created_at", default_limit: int = DEFAULT_LIMIT
) -> Page:
    """Keyset pagination on (time_field, pk) descending, so deep pages cost what the first one does."""
    limit, cursor = page_params(params, default_limit=default_limit)
    queryset = queryset.order_by(f"-{time_field}", "-pk")
    if cursor:
        anchor = queryset.model._default_manager.filter(**{id_field: cursor}).values(time_field, "pk").first()
        if anchor is None:
            return Page(items=[], has_more=False, next_cursor=None)
        queryset = queryset.filter(
            Q(**{f"{time_field}__lt": anchor[time_field]})
            | Q(**{time_field: anchor[time_field], "pk__lt": anchor["pk"]})
        )
    rows = list(queryset[: limit + 1])
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = getattr(rows[-1], id_field) if has_more else None
    return Page(items=rows, has_more=has_more, next_cursor=next_cursor)
