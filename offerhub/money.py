"""Money at the API edge: decimal strings with exactly two decimals, never floats."""

import re
from decimal import ROUND_HALF_UP, Decimal

MONEY_PATTERN = re.compile(r"^\d+\.\d{2}$")
CENT = Decimal("0.01")


class MoneyFormatError(ValueError):
    pass


def money_parse(value, *, allow_zero: bool = False) -> Decimal:
    """Parse an API money string such as "100.00"; reject numbers, signs and other precisions."""
    if not isinstance(value, str) or not MONEY_PATTERN.match(value):
        raise MoneyFormatError('must be a string with exactly two decimals, such as "100.00"')
    amount = Decimal(value)
    if amount == 0 and not allow_zero:
        raise MoneyFormatError("must be greater than 0.00")
    return amount


def money_format(amount: Decimal) -> str:
    return str(amount.quantize(CENT, rounding=ROUND_HALF_UP))
