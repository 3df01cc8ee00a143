"""{{ order|order_ref }}: the short reference people see for an order (marketplace.references)."""

from django import template

from marketplace.references import order_reference

register = template.Library()


@register.filter
def order_ref(order) -> str:
    return order_reference(order.pk) if order is not None and order.pk is not None else ""
