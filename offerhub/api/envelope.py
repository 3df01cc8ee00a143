"""Success envelopes (API.md §1.5): `{success, data, meta}`, lists with cursors."""

from rest_framework.response import Response

from offerhub.correlation import correlation_id_get
from offerhub.timefmt import iso_now


def _meta() -> dict:
    return {"requestId": correlation_id_get(), "timestamp": iso_now()}


def api_response(data, *, status: int = 200, mirror: bool = False, headers: dict | None = None) -> Response:
    """Wrap one resource. `mirror` also copies its fields to the top level, for the SDK's
    balance, top-up and withdrawal methods that do not unwrap `data`."""
    body = {"success": True, "data": data, "meta": _meta()}
    if mirror and isinstance(data, dict):
        body.update({key: value for key, value in data.items() if key not in body})
    return Response(body, status=status, headers=headers)


def api_list_response(items: list, *, has_more: bool, next_cursor: str | None) -> Response:
    return Response(
        {
            "success": True,
            "data": items,
            "meta": _meta(),
            "hasMore": has_more,
            "nextCursor": next_cursor,
            "pagination": {"hasMore": has_more, "nextCursor": next_cursor},
        }
    )
