"""Platform reads shared by the API and the backoffice."""

from django.db.models import QuerySet
from django.utils.dateparse import parse_datetime

from offerhub.api.errors import validation_error
from offerhub.models import AuditLog


def _parse_bound(params, name: str):
    raw = params.get(name)
    if not raw:
        return None
    try:
        value = parse_datetime(raw)
    except ValueError:  # well-formed but impossible, e.g. February 30th
        value = None
    if value is None:
        raise validation_error([(name, "must be an ISO-8601 timestamp")])
    return value


def audit_log_filter(*, params, marketplace_id: str = "") -> QuerySet[AuditLog]:
    """Audit rows matching the API's query parameters (API.md §15)."""
    rows = AuditLog.objects.all()
    if marketplace_id:
        rows = rows.filter(marketplace_id=marketplace_id)
    if resource_type := params.get("resourceType"):
        rows = rows.filter(resource_type__iexact=resource_type)
    if resource_id := params.get("resourceId"):
        rows = rows.filter(resource_id=resource_id)
    if user_id := params.get("userId"):
        rows = rows.filter(user_id=user_id)
    if action := params.get("action"):
        rows = rows.filter(action=action)
    if (start := _parse_bound(params, "from")) is not None:
        rows = rows.filter(occurred_at__gte=start)
    if (end := _parse_bound(params, "to")) is not None:
        rows = rows.filter(occurred_at__lte=end)
    return rows
