"""What a refund costs the buyer: the escrow's fees, in dollars, for the pages that say so before anyone pays.

Trustless Work takes its fee and the platform's from every payout of an escrow, a refund or a
dispute's refund share included (PROVIDERS.md, contract rules); OfferHub does not pay them back
(docs/payments.md, "Fees on refunds").
"""

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from escrow.models import Escrow
from escrow.services import TRUSTLESS_WORK_FEE_BPS, escrow_fees
from offerhub.money import money_dollars


@dataclass(frozen=True)
class RefundFees:
    """Dollars, as the page shows them: `fees` is exactly `amount` minus `back`, and its two parts add up to it."""

    amount: Decimal  # what the escrow pays out
    back: Decimal  # what the buyer gets back of it
    fees: Decimal
    trustless_work: Decimal
    platform: Decimal
    trustless_work_percent: str  # "0.3"
    platform_percent: str  # "5", "2.5"


def refund_fees(*, amount: int, platform_fee_percent: Decimal) -> RefundFees:
    """The fees a refund of `amount` stroops pays. Each part is rounded to the cent and the
    Trustless Work part takes the rounding, so the figures shown add up to the cent."""
    split = escrow_fees(amount=amount, platform_fee_percent=platform_fee_percent)
    gross, back = money_dollars(amount), money_dollars(split.net)
    fees = gross - back
    platform = min(fees, money_dollars(split.platform + 50_000))  # to the nearest cent
    return RefundFees(
        amount=gross,
        back=back,
        fees=fees,
        trustless_work=fees - platform,
        platform=platform,
        trustless_work_percent=_percent(Decimal(TRUSTLESS_WORK_FEE_BPS) / 100),
        platform_percent=_percent(Decimal(platform_fee_percent)),
    )


def _percent(value: Decimal) -> str:
    """2.50 as "2.5", 10 as "10" (never "1E+1")."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def order_refund_fees_of(order, escrow=None) -> RefundFees:
    """A refund of what the order's escrow holds now (all of the order before it is funded).
    Pass the order's escrow when it is loaded already; else it is read (two columns)."""
    if escrow is not None:
        held = (escrow.balance, escrow.platform_fee_percent)
    else:  # two columns, not the model: an Escrow's FSM state must not be loaded lazily
        held = Escrow.objects.filter(engagement_id=order.public_id).values_list("balance", "platform_fee_percent")
        held = held.first()
    if held is None or not held[0]:
        return refund_fees(amount=order.amount, platform_fee_percent=settings.OFFERHUB_PLATFORM_FEE_PERCENT)
    return refund_fees(amount=held[0], platform_fee_percent=held[1])
