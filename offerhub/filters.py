"""Query filters of the platform's list endpoints (django-filter), checked like any input."""

from datetime import UTC

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField

from offerhub.models import AuditLog


class UtcDateTimeField(IsoDateTimeField):
    """An ISO-8601 instant, in UTC: PostgreSQL refuses offsets beyond ±15:59 and years outside
    1-9999, which a well-formed timestamp can still name."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError("must be an instant between the years 1 and 9999") from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


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
AuditLogFilter.base_filters["from"] = UtcDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
AuditLogFilter.base_filters["to"] = UtcDateTimeFilter(field_name="occurred_at", lookup_expr="lte")
