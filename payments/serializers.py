"""Input and output of the balance, wallet and withdrawal endpoints (API.md §5, §6, §11).

Inputs are strict (offerhub.api.serializers): strings must be JSON strings, bounded by the column they
end up in, without NUL; money is MoneyField's two-decimal ASCII string. Outputs
describe, field for field, the dicts that payments.selectors and payments.api build, so that
the OpenAPI schema says exactly what the endpoints answer.
"""

from django.conf import settings
from rest_framework import serializers

from offerhub.api.serializers import (
    SHORT_TEXT_MAX,
    AliasedInput,
    CurrencyField,
    MetadataField,
    MoneyField,
    PublicIdField,
    QuerySerializer,
    StrictSerializer,
    StringField,
    TextField,
    TimestampField,
)
from payments.models import Hold, Topup, Withdrawal


def _balance_amount(**kwargs) -> MoneyField:
    return MoneyField(error_code="INVALID_AMOUNT_FORMAT", **kwargs)


# --- Balance inputs ------------------------------------------------------------------------------

HOLD_REFERENCE_MAX = Hold._meta.get_field("reference").max_length


class HoldInput(AliasedInput):
    """reserve / cancel-reservation / deduct-reserved: `reference` is the SDK's name for `orderId`."""

    amount = _balance_amount()
    orderId = StringField(
        max_length=HOLD_REFERENCE_MAX,
        help_text="an opaque hold reference (need not be an existing order); alias `reference`",
    )
    currency = CurrencyField()
    description = TextField(required=False)

    class Meta:
        aliases = {"reference": "orderId"}


class ReleaseInput(HoldInput):
    sellerId = PublicIdField(help_text="the user paid; alias `recipientId`")

    class Meta:
        aliases = {"reference": "orderId", "recipientId": "sellerId"}


class AdjustInput(AliasedInput):
    """credit / debit by support: `reference` is a free reference here, `reason` an alias of `description`."""

    amount = _balance_amount()
    currency = CurrencyField()
    description = TextField(required=False, help_text="why support adjusts the balance (required in effect)")
    reference = StringField(required=False, allow_blank=True, max_length=SHORT_TEXT_MAX)

    class Meta:
        aliases = {"reason": "description"}


class EmptyInput(StrictSerializer):
    """Action POSTs take an empty body or `{}` (API.md §1.1); any field is unknown."""


# --- Balance outputs -----------------------------------------------------------------------------


class BalanceOutput(serializers.Serializer):
    user_id = serializers.CharField()
    userId = serializers.CharField()
    available = MoneyField()
    reserved = MoneyField()
    total = MoneyField()
    currency = serializers.ChoiceField(["USD"])
    updated_at = TimestampField()
    updatedAt = TimestampField()


class BalanceVerifyOutput(BalanceOutput):
    providerVerified = serializers.BooleanField()


class BalanceSyncOutput(BalanceOutput):
    synced = serializers.BooleanField()
    localBalance = MoneyField()
    providerBalance = serializers.CharField(help_text='a money string, or "unknown" when the chain is unreachable')
    discrepancy = serializers.CharField(help_text='a money string, or "unknown" when the chain is unreachable')
    action = serializers.ChoiceField(["none", "adjusted", "flagged"])


class BalancePairOutput(serializers.Serializer):
    available = MoneyField()
    reserved = MoneyField()


class BalanceOperationOutput(BalanceOutput):
    success = serializers.BooleanField()
    operation = serializers.ChoiceField(
        ["CREDIT_AVAILABLE", "DEBIT_AVAILABLE", "RESERVE", "RELEASE", "CANCEL_RESERVATION", "DEDUCT_RESERVED"]
    )
    amount = MoneyField()
    previousBalance = BalancePairOutput()
    newBalance = BalancePairOutput()
    auditLogId = serializers.CharField(allow_null=True)
    balance = BalanceOutput()


class BalanceReleaseOutput(BalanceOperationOutput):
    buyerBalance = BalanceOutput(help_text="the buyer's balance after the release")


# --- Wallet --------------------------------------------------------------------------------------


class WalletBalanceOutput(serializers.Serializer):
    usdc = serializers.CharField(help_text='seven decimals, as Stellar writes amounts: "150.0000000"')
    xlm = serializers.CharField()


class WalletOutput(serializers.Serializer):
    publicKey = serializers.CharField()
    type = serializers.ChoiceField(["INVISIBLE", "EXTERNAL"])
    provider = serializers.ChoiceField(["STELLAR"])
    isActive = serializers.BooleanField()
    isPrimary = serializers.BooleanField()
    balance = WalletBalanceOutput()
    createdAt = TimestampField()


class AssetOutput(serializers.Serializer):
    code = serializers.CharField()
    issuer = serializers.CharField()


class WalletDepositOutput(serializers.Serializer):
    provider = serializers.ChoiceField(["crypto"])
    method = serializers.ChoiceField(["stellar_address"])
    address = serializers.CharField()
    asset = AssetOutput()
    network = serializers.ChoiceField(["testnet", "mainnet"])
    instructions = serializers.CharField()


class WalletTransactionOutput(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.ChoiceField(["payment", "create_account"])
    # `from` is a Python keyword: declared through the class namespace.
    vars()["from"] = serializers.CharField(allow_null=True)
    to = serializers.CharField(allow_null=True)
    amount = serializers.CharField(allow_null=True, help_text="seven decimals")
    asset = serializers.CharField(help_text='"XLM" or "CODE:ISSUER"')
    createdAt = TimestampField(allow_null=True)
    hash = serializers.CharField(allow_null=True)
    successful = serializers.BooleanField()


# A Horizon paging token: the id of a payment operation, a positive 64-bit integer.
HORIZON_CURSOR_MAX = 2**63 - 1


class WalletTransactionsQuery(QuerySerializer):
    cursor = serializers.RegexField(
        r"^[0-9]{1,19}$", required=False, help_text="the `id` of the last transaction of the page before"
    )

    def validate_cursor(self, value: str) -> str:
        if int(value) > HORIZON_CURSOR_MAX:
            raise serializers.ValidationError(f"must be at most {HORIZON_CURSOR_MAX}")
        return value


# --- Withdrawals ---------------------------------------------------------------------------------


def _column(name: str) -> int:
    return Withdrawal._meta.get_field(name).max_length


class WithdrawalCreateInput(StrictSerializer):
    userId = PublicIdField()
    amount = MoneyField()
    currency = CurrencyField()
    destinationType = serializers.ChoiceField(Withdrawal.DestinationType.choices)
    destinationRef = StringField(
        max_length=_column("destination_ref"),
        help_text="a Stellar G… address for crypto; for bank and airtm_balance the linked Airtm account "
        "(its e-mail or Airtm user id)",
    )
    commit = serializers.BooleanField(required=False, default=False, help_text="Airtm only: commit on creation")
    description = TextField(required=False, max_length=_column("description"))
    memo = StringField(required=False, allow_blank=True, max_length=_column("memo"), help_text="at most 28 bytes")


class WithdrawalOwnerQuery(serializers.Serializer):
    userId = PublicIdField(required=False, help_text="only this user's withdrawals")


class WithdrawalListQuery(WithdrawalOwnerQuery, QuerySerializer):
    pass


class WithdrawalOutput(serializers.Serializer):
    id = serializers.CharField()
    userId = serializers.CharField()
    amount = MoneyField()
    fee = MoneyField(allow_null=True)
    currency = serializers.ChoiceField(["USD"])
    status = serializers.ChoiceField(Withdrawal.Status.choices)
    destinationType = serializers.ChoiceField(Withdrawal.DestinationType.choices)
    destinationRef = serializers.CharField()
    committed = serializers.BooleanField()
    airtmPayoutId = serializers.CharField(allow_null=True)
    transactionHash = serializers.CharField(allow_null=True)
    failureReason = serializers.CharField(allow_null=True)
    createdAt = TimestampField()
    updatedAt = TimestampField()


# --- Top-ups -------------------------------------------------------------------------------------


class RedirectUrlField(serializers.URLField):
    """Where the member's browser is sent back to: https (http too in DEBUG), bounded by the column."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("max_length", Topup._meta.get_field("return_url").max_length)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise serializers.ValidationError("must be a string")
        value = super().to_internal_value(data)
        if not value.startswith("https://") and not (settings.DEBUG and value.startswith("http://")):
            raise serializers.ValidationError("must be an https URL")
        return value


class TopupCreateInput(AliasedInput):
    user_id = PublicIdField(help_text="the member adding funds; alias `userId`")
    amount = MoneyField()
    currency = CurrencyField()
    description = TextField(required=False, max_length=Topup._meta.get_field("description").max_length)
    return_url = RedirectUrlField(help_text="where the callback sends the member after paying")
    cancel_url = RedirectUrlField(help_text="where the callback sends the member otherwise")
    metadata = MetadataField()

    class Meta:
        aliases = {"userId": "user_id", "returnUrl": "return_url", "cancelUrl": "cancel_url"}


class TopupOwnerQuery(serializers.Serializer):
    user_id = PublicIdField(required=False, help_text="only this user's top-ups; alias `userId`")
    userId = PublicIdField(required=False, help_text="alias of user_id")


class TopupListQuery(TopupOwnerQuery, QuerySerializer):
    pass


class TopupCallbackQuery(serializers.Serializer):
    """What Airtm's redirect adds: informative only, never trusted."""

    status = StringField(required=False, allow_blank=True, max_length=50)
    code = StringField(required=False, allow_blank=True, max_length=100)


class TopupOutput(serializers.Serializer):
    id = serializers.CharField()
    userId = serializers.CharField()
    amount = MoneyField()
    currency = serializers.ChoiceField(["USD"])
    status = serializers.ChoiceField(Topup.Status.choices)
    airtmPayinId = serializers.CharField(allow_null=True)
    confirmationUri = serializers.CharField(allow_null=True)
    expiresAt = TimestampField(allow_null=True)
    failureReason = serializers.CharField(allow_null=True)
    description = serializers.CharField(allow_null=True)
    createdAt = TimestampField()
    updatedAt = TimestampField()
