from decimal import Decimal

from django import forms
from django.conf import settings

from offerhub.forms import MoneyFormField
from payments.topups import topup_limits
from payments.withdrawals import withdrawal_limits


class WithdrawalForm(forms.Form):
    amount = MoneyFormField(label="Amount (USD)")
    destination = forms.CharField(
        label="Destination wallet address",
        max_length=56,
        help_text="The address of your account at an exchange or wallet that accepts USDC on Stellar. "
        "It starts with G and has 56 characters.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    memo = forms.CharField(
        label="Memo (if the destination asks for one)",
        max_length=28,
        required=False,
        help_text="Exchanges often need a memo to know the payment is yours.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        minimum, maximum = withdrawal_limits()
        self.fields["amount"].help_text = f"Between ${minimum:,.2f} and ${maximum:,.2f}."

    def clean_amount(self):
        """The limits say more than the field's own "above $0.00"."""
        amount = self.cleaned_data["amount"]
        minimum, maximum = withdrawal_limits()
        if not minimum <= amount <= maximum:
            raise forms.ValidationError(f"Withdrawals must be between ${minimum:,.2f} and ${maximum:,.2f}.")
        return amount


class SimulateDepositForm(forms.Form):
    """Sandbox: a deposit as a top-up would bring it, within the top-up limits."""

    amount = MoneyFormField(label="Amount (USD)", initial=Decimal("100.00"))

    def clean_amount(self):
        amount = self.cleaned_data["amount"]
        minimum, maximum = (Decimal(settings.OFFERHUB_LIMITS["topup"][bound]) for bound in ("min", "max"))
        if not minimum <= amount <= maximum:
            raise forms.ValidationError(f"Enter an amount between ${minimum:,.2f} and ${maximum:,.2f}.")
        return amount


class AirtmWithdrawalForm(forms.Form):
    """Withdraw to the member's linked Airtm account: dollars only, within the withdrawal limits."""

    amount = MoneyFormField(label="Amount (USD)")

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("prefix", "airtm")  # its own field ids beside the crypto form's "amount"
        super().__init__(*args, **kwargs)
        minimum, maximum = withdrawal_limits()
        self.fields["amount"].help_text = f"Between ${minimum:,.2f} and ${maximum:,.2f}."

    def clean_amount(self):
        amount = self.cleaned_data["amount"]
        minimum, maximum = withdrawal_limits()
        if not minimum <= amount <= maximum:
            raise forms.ValidationError(f"Withdrawals must be between ${minimum:,.2f} and ${maximum:,.2f}.")
        return amount


class TopupForm(forms.Form):
    """Add funds with Airtm: dollars, within the top-up limits."""

    amount = MoneyFormField(label="Amount (USD)")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        minimum, maximum = topup_limits()
        self.fields["amount"].help_text = f"Between ${minimum:,.2f} and ${maximum:,.2f}. You pay on Airtm's page."

    def clean_amount(self):
        amount = self.cleaned_data["amount"]
        minimum, maximum = topup_limits()
        if not minimum <= amount <= maximum:
            raise forms.ValidationError(f"Enter an amount between ${minimum:,.2f} and ${maximum:,.2f}.")
        return amount
