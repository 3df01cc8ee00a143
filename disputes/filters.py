"""Query filters of GET /disputes (API.md §10)."""

import django_filters
from django.db.models import Q
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field

from disputes.models import Dispute
from offerhub.filters import AnyCaseChoiceFilter, IdFilter


class DisputeFilter(django_filters.FilterSet):
    orderId = IdFilter(field_name="order__public_id", help_text="ord_…")
    status = AnyCaseChoiceFilter(choices=Dispute.Status.choices)
    openedBy = AnyCaseChoiceFilter(field_name="opened_by", choices=Dispute.OpenedBy.choices)
    overdue = django_filters.TypedChoiceFilter(
        choices=[("true", "true"), ("false", "false")],
        coerce=lambda value: value == "true",
        method="filter_overdue",
        help_text="true: unsettled cases whose other party has not answered in time; false: the rest",
    )

    class Meta:
        model = Dispute
        fields = []

    @extend_schema_field({"type": "string", "enum": ["true", "false"]})
    def filter_overdue(self, queryset, name, value):
        """The same rule as Dispute.is_overdue, in SQL."""
        overdue = Q(status__in=Dispute.UNSETTLED, responded_at__isnull=True, respond_by__lt=timezone.now())
        return queryset.filter(overdue) if value else queryset.exclude(overdue)
