"""Request field parsing shared by the API views: money, currency, ids."""

from decimal import Decimal

from offerhub.api.errors import validation_error
from offerhub.errors import ServiceError
from offerhub.money import MoneyFormatError, money_parse


def parse_amount(data: dict, field: str = "amount", *, code: str = "VALIDATION_ERROR") -> Decimal:
    """A required money string such as "100.00"; `code` is INVALID_AMOUNT_FORMAT on balance endpoints."""
    if field not in data or data[field] in (None, ""):
        raise validation_error([(field, "is required")])
    try:
        return money_parse(data[field])
    except MoneyFormatError as exc:
        if code == "VALIDATION_ERROR":
            raise validation_error([(field, str(exc))]) from None
        raise ServiceError(code, f"{field} {exc}", details={"field": field}) from None


def parse_currency(data: dict) -> str:
    currency = data.get("currency", "USD")
    if currency != "USD":
        raise ServiceError("INVALID_CURRENCY", "Only USD is supported", details={"field": "currency"})
    return currency


def require_fields(data, allowed: set[str], required: tuple[str, ...] = ()) -> dict:
    """The body as a dict with no unknown field and every required one present."""
    if not isinstance(data, dict):
        raise validation_error([("body", "must be a JSON object")])
    problems = [(name, "unknown field") for name in sorted(set(data) - allowed)]
    problems += [(name, "is required") for name in required if data.get(name) in (None, "")]
    if problems:
        raise validation_error(problems)
    return data
