"""Query filters of the list endpoints (django-filter), checked like any input, and the filter
types the apps' FilterSets share.

A list view sets `filter_backends = [DjangoFilterBackend]` and `filterset_class` (the schema
reads its parameters from them) and narrows its rows with `rows_filtered`: a bad value is a 400
naming its parameter; paging (`limit`, `cursor`) is offerhub.api.pagination's.
"""

import datetime as dt
from datetime import UTC

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.utils.dateparse import parse_date
from django_filters.constants import EMPTY_VALUES
from django_filters.fields import IsoDateTimeField
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import exceptions as drf_exceptions
from rest_framework.exceptions import ErrorDetail

from offerhub.models import AuditLog

ID_VALIDATOR = RegexValidator(r"^[A-Za-z0-9_]{1,64}\Z", "must be an id such as usr_… (letters, digits and _ only)")


def rows_filtered(*, view, request, rows):
    """`rows` narrowed by the request's query parameters, as the view's `filterset_class` says."""
    return DjangoFilterBackend().filter_queryset(request, rows, view)


def filter_values(*, filterset_class, params) -> dict:
    """The values of the filters `params` names, cleaned as `filterset_class`'s form cleans them,
    for a view that narrows its rows itself (in SQL). A FilterSet and its form deep-copy every
    filter and form field on each request (a fifth of a page of orders' time); the class's own
    fields clean a value without state, so they serve every request. A bad value is the 400
    DjangoFilterBackend raises (each parameter with its messages); empty values are left out,
    as the FilterSet skips them."""
    cleaned, errors = {}, {}
    for name, declared in filterset_class.base_filters.items():
        try:
            value = declared.field.clean(params.get(name))
        except ValidationError as error:
            errors[name] = [ErrorDetail(e.message % (e.params or ()), code=e.code) for e in error.error_list]
            continue
        if value not in EMPTY_VALUES:
            cleaned[name] = value
    if errors:
        raise drf_exceptions.ValidationError(errors)
    return cleaned


class IdFilter(django_filters.CharFilter):
    """An exact match on a public id; anything not id-shaped is refused rather than looked up."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("validators", [ID_VALIDATOR])
        super().__init__(*args, **kwargs)


class AnyCaseChoiceField(forms.ChoiceField):
    def to_python(self, value):
        return super().to_python(value).upper()


class AnyCaseChoiceFilter(django_filters.ChoiceFilter):
    """An upper-case enum the original's clients also sent in lower case (`seller`, `order_created`)."""

    field_class = AnyCaseChoiceField


class UtcDateTimeField(IsoDateTimeField):
    """An ISO-8601 instant (or a date: its midnight UTC), in UTC: PostgreSQL refuses offsets
    beyond ±15:59 and years outside 1-9999, which a well-formed timestamp can still name."""

    def to_python(self, value):
        try:
            day = parse_date(value) if isinstance(value, str) and len(value) == 10 else None
        except ValueError:  # well-formed but impossible, e.g. February 30th
            raise forms.ValidationError("must be an ISO-8601 date or timestamp") from None
        value = dt.datetime.combine(day, dt.time.min, tzinfo=UTC) if day else super().to_python(value)
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
