"""Money at the API edge: decimal strings with exactly two decimals, never floats."""

import re
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

# ASCII digits only (fullwidth or Arabic-Indic digits are not money) and no trailing newline (fullmatch, not `$`).
MONEY_PATTERN = re.compile(r"[0-9]{1,15}\.[0-9]{2}")
CENT = Decimal("0.01")
# The largest amount anything may name: far below int64 stroops (922,337,203,685.4775807), so
# no sum of balances and amounts can overflow a ledger column or a Stellar amount.
MONEY_MAX = Decimal("1000000000.00")


class MoneyFormatError(ValueError):
    pass


def money_parse(value, *, allow_zero: bool = False) -> Decimal:
    """Parse an API money string such as "100.00"; reject numbers, signs and other precisions."""
    if not isinstance(value, str) or not MONEY_PATTERN.fullmatch(value):
        raise MoneyFormatError('must be a string with exactly two decimals, such as "100.00"')
    amount = Decimal(value)
    if amount == 0 and not allow_zero:
        raise MoneyFormatError("must be greater than 0.00")
    if amount > MONEY_MAX:
        raise MoneyFormatError(f"must be at most {MONEY_MAX}")
    return amount


def money_format(amount: Decimal) -> str:
    return str(amount.quantize(CENT, rounding=ROUND_HALF_UP))


STROOPS_PER_UNIT = 10_000_000


def money_to_stroops(amount: Decimal) -> int:
    """Dollars (USDC units) to integer stroops, exactly."""
    stroops = amount * STROOPS_PER_UNIT
    if stroops != stroops.to_integral_value():
        raise MoneyFormatError(f"{amount} has more than 7 decimal places")
    return int(stroops)


def money_dollars(stroops: int) -> Decimal:
    """Stroops as dollars, rounded toward zero to the cent: never show more than there is."""
    return (Decimal(stroops) / STROOPS_PER_UNIT).quantize(CENT, rounding=ROUND_DOWN)


STROOPS_PER_CENT = STROOPS_PER_UNIT // 100


def money_from_stroops(stroops: int) -> str:
    """Stroops as an API money string ("12.50"), rounded as money_dollars (toward zero, to the
    cent: a negative amount keeps its sign, "-0.00" included). In integers: every API read of
    money writes it, a page of orders twenty times."""
    cents = abs(stroops) // STROOPS_PER_CENT
    return f"{'-' if stroops < 0 else ''}{cents // 100}.{cents % 100:02d}"


def chain_amount(stroops: int) -> str:
    """Stroops as Stellar writes amounts: seven decimals."""
    return f"{Decimal(stroops) / STROOPS_PER_UNIT:.7f}"
