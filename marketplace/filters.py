"""Query filters of the users and orders lists (API.md §4, §8)."""

import django_filters
from django.db.models import Q

from marketplace.models import Order, User
from offerhub.filters import AnyCaseChoiceFilter, IdFilter, UtcDateTimeFilter


class UserFilter(django_filters.FilterSet):
    type = AnyCaseChoiceFilter(choices=User.Type.choices)
    status = AnyCaseChoiceFilter(choices=User.Status.choices)
    externalUserId = django_filters.CharFilter(
        field_name="external_user_id", max_length=User._meta.get_field("external_user_id").max_length
    )

    class Meta:
        model = User
        fields = []


class OrderFilter(django_filters.FilterSet):
    """`buyer_id` and `seller_id` together match orders of either (as the original did);
    `created_after`/`created_before` are inclusive bounds."""

    buyer_id = IdFilter(method="_by_party", help_text="with seller_id too: orders matching either")
    seller_id = IdFilter(method="_by_party")
    status = AnyCaseChoiceFilter(choices=Order.Status.choices)
    created_after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcDateTimeFilter(field_name="created_at", lookup_expr="lte")

    class Meta:
        model = Order
        fields = []

    def _by_party(self, queryset, name, value):
        buyer, seller = self.form.cleaned_data.get("buyer_id"), self.form.cleaned_data.get("seller_id")
        if buyer and seller:  # both given: applied once, for buyer_id
            if name == "seller_id":
                return queryset
            return queryset.filter(Q(buyer__public_id=buyer) | Q(seller__public_id=seller))
        return queryset.filter(**{"buyer__public_id" if name == "buyer_id" else "seller__public_id": value})
