"""Query filters of the platform's list endpoints (django-filter), checked like any input."""

import django_filters

from offerhub.models import AuditLog


class AuditLogFilter(django_filters.FilterSet):
    """GET /audit/logs (API.md §15): `resourceType` ignores case, `from`/`to` bound occurredAt inclusively."""

    resourceType = django_filters.CharFilter(field_name="resource_type", lookup_expr="iexact", max_length=100)
    resourceId = django_filters.CharFilter(field_name="resource_id", max_length=255)
    userId = django_filters.CharFilter(field_name="user_id", max_length=64)
    action = django_filters.CharFilter(field_name="action", max_length=100)

    class Meta:
        model = AuditLog
        fields = []


# `from` is a Python keyword, so these two are added by name.
AuditLogFilter.base_filters["from"] = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
AuditLogFilter.base_filters["to"] = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lte")
