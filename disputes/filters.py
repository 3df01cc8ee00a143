"""Query filters of GET /disputes (API.md §10)."""

import django_filters

from disputes.models import Dispute
from offerhub.filters import AnyCaseChoiceFilter, IdFilter


class DisputeFilter(django_filters.FilterSet):
    orderId = IdFilter(field_name="order__public_id", help_text="ord_…")
    status = AnyCaseChoiceFilter(choices=Dispute.Status.choices)
    openedBy = AnyCaseChoiceFilter(field_name="opened_by", choices=Dispute.OpenedBy.choices)

    class Meta:
        model = Dispute
        fields = []
