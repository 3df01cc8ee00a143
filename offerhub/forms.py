"""Form fields the web pages of every app share."""

import re
from decimal import Decimal

from django import forms

from offerhub.money import MONEY_MAX, MoneyFormatError, money_parse

# What a person types for dollars: "12", "12.5", "12.50", also "12." and ".50". ASCII digits only
# (`[0-9]`, not `\d`, which matches fullwidth and Arabic-Indic digits too); no sign, exponent or commas.
MONEY_TYPED = re.compile(r"[0-9]+(?:\.[0-9]{0,2})?|\.[0-9]{1,2}")
TOO_MANY_DECIMALS = re.compile(r"[0-9]*\.[0-9]{3,}")


class MoneyFormField(forms.Field):
    """Dollars typed into a form, as strict as the API's money (offerhub.money.money_parse).

    The shapes people type are accepted ("12", "12.5", " 12.50 ") and the value comes back as a
    Decimal in cents (Decimal("12.50")); surrounding spaces are stripped, any other whitespace
    (a newline, a tab) is refused. Thousands separators are refused rather than guessed: "1,234"
    is a thousand dollars to some people and one dollar to others.
    """

    default_error_messages = {
        "invalid": "Enter the amount in dollars with the digits 0-9, such as 100 or 12.50.",
        "sign": "Enter the amount without a sign, such as 100 or 12.50.",
        "commas": "Enter the amount without commas, such as 1234.50.",
        "decimals": "Use at most two decimals (cents), such as 12.50.",
        "zero": "Enter an amount above $0.00.",
        "max": f"Enter an amount of at most ${MONEY_MAX:,.2f}.",
    }

    def __init__(self, *, allow_zero: bool = False, **kwargs):
        kwargs.setdefault("widget", forms.NumberInput(attrs={"step": "0.01", "inputmode": "decimal"}))
        super().__init__(**kwargs)
        self.allow_zero = allow_zero

    def to_python(self, value) -> Decimal | None:
        if value in self.empty_values:
            return None
        text = str(value).strip(" ")
        if not text:
            return None
        if not MONEY_TYPED.fullmatch(text):
            raise forms.ValidationError(self.error_messages[self._refusal(text)], code="invalid")
        whole, _, cents = text.partition(".")
        # More whole digits than MONEY_MAX has is too large; checked on the text, so no Decimal is
        # built from thousands of digits.
        if len(whole.lstrip("0")) > len(str(int(MONEY_MAX))):
            raise forms.ValidationError(self.error_messages["max"], code="max_value")
        # The API's own rule decides zero and the maximum, on the amount written as the API writes it.
        canonical = f"{whole.lstrip('0') or '0'}.{cents.ljust(2, '0')}"
        try:
            return money_parse(canonical, allow_zero=self.allow_zero)
        except MoneyFormatError:
            code = "zero" if Decimal(canonical) == 0 else "max"
            raise forms.ValidationError(self.error_messages[code], code=code) from None

    @staticmethod
    def _refusal(text: str) -> str:
        """Which message says best how to type `text`."""
        if text[0] in "+-":
            return "sign"
        if "," in text:
            return "commas"
        if TOO_MANY_DECIMALS.fullmatch(text):
            return "decimals"
        return "invalid"
