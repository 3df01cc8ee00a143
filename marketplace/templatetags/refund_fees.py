"""{% order_refund_fees order as refund %} and {% price_refund_fees price as refund %}: see marketplace.refund_fees."""

from decimal import Decimal

from django import template
from django.conf import settings

from marketplace.refund_fees import RefundFees, order_refund_fees_of, refund_fees

register = template.Library()


@register.simple_tag
def order_refund_fees(order, escrow=None) -> RefundFees:
    """`escrow`: the order's escrow if the page has it (None or "" reads it)."""
    return order_refund_fees_of(order, escrow or None)


@register.simple_tag
def price_refund_fees(price: Decimal) -> RefundFees:
    """At checkout: a refund of the whole price, with today's platform fee."""
    return refund_fees(
        amount=int(Decimal(price) * 10_000_000), platform_fee_percent=settings.OFFERHUB_PLATFORM_FEE_PERCENT
    )
