from decimal import Decimal

from django import forms

from payments.withdrawals import withdrawal_limits


class WithdrawalForm(forms.Form):
    amount = forms.DecimalField(
        label="Amount (USD)",
        min_value=Decimal("0.01"),
        max_digits=12,
        decimal_places=2,
        widget=forms.NumberInput(attrs={"step": "0.01", "inputmode": "decimal"}),
    )
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
        self.fields["amount"].help_text = f"Between ${minimum} and ${maximum}."


class SimulateDepositForm(forms.Form):
    amount = forms.DecimalField(
        label="Amount (USD)",
        min_value=Decimal("0.01"),
        max_value=Decimal("10000"),
        max_digits=12,
        decimal_places=2,
        initial=Decimal("100.00"),
    )
