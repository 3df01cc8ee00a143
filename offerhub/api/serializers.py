"""Input and output serializers shared by every API module, and the fields they are built from.

Every endpoint's body and query go through a serializer: strings are bounded and free of NUL
(DRF's CharField refuses NUL and surrogates), money is a two-decimal ASCII string, ids are
id-shaped, and unknown body fields are refused (API.md §1.1) unless listed in `Meta.aliases`.
"""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from offerhub.api.pagination import parse_limit
from offerhub.money import MONEY_MAX, MoneyFormatError, money_parse

# Free text (reasons, descriptions, evidence) is bounded so that nothing downstream
# (audit redaction, e-mails, the database) ever handles an unbounded string.
TEXT_MAX = 2000
SHORT_TEXT_MAX = 255
ID_PATTERN = r"^[A-Za-z0-9_]{1,64}$"


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not declare (plus any listed in `Meta.aliases`)."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"body": ["must be a JSON object"]})
        allowed = set(self.fields) | set(getattr(getattr(self, "Meta", None), "aliases", ()))
        unknown = {name: ["unknown field"] for name in sorted(set(data) - allowed)}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({**unknown, **exc.detail}) from None
        if unknown:
            raise serializers.ValidationError(unknown)
        return value


class AliasedInput(StrictSerializer):
    """A strict input whose `Meta.aliases` maps the original's or the SDK's field names onto ours
    (`{"reference": "orderId"}`): the alias is used when our name is absent or empty, and errors
    name the field the client sent."""

    class Meta:
        aliases: dict[str, str] = {}

    def to_internal_value(self, data):
        sent_as = {}
        if isinstance(data, dict):
            data = dict(data)
            for alias, name in self.Meta.aliases.items():
                if alias in data:
                    value = data.pop(alias)
                    if data.get(name) in (None, ""):
                        data[name], sent_as[name] = value, alias
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as exc:
            detail = exc.detail
            if isinstance(detail, dict):
                detail = {sent_as.get(name, name): errors for name, errors in detail.items()}
            raise serializers.ValidationError(detail) from None


def validated(serializer_class, data) -> dict:
    """The input checked by `serializer_class`; an empty body counts as `{}`. A refusal raises
    DRF's ValidationError, which the API answers once (offerhub.api.errors), naming each field."""
    if data is None or (hasattr(data, "getlist") and not data):
        data = {}
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class QuerySerializer(serializers.Serializer):
    """Query parameters: unknown ones are ignored (clients add their own, e.g. cache busters)."""

    limit = serializers.CharField(required=False, help_text="1-100 (larger values are clamped)")
    cursor = serializers.RegexField(
        ID_PATTERN, required=False, help_text="the `id` of the last item of the page before"
    )

    def to_internal_value(self, data):
        # A QueryDict: the last value of each parameter, as Django's .get() gives.
        return super().to_internal_value({key: data.get(key) for key in data} if hasattr(data, "getlist") else data)

    def validate_limit(self, value: str) -> int:
        return parse_limit(value)  # one rule for every list, whichever way it reads its query


@extend_schema_field(
    {
        "type": "string",
        "pattern": r"^[0-9]{1,15}\.[0-9]{2}$",
        "example": "100.00",
        "description": f"dollars with exactly two decimals, at most {MONEY_MAX}",
    }
)
class MoneyField(serializers.Field):
    """An API money string, "100.00": ASCII digits, exactly two decimals, > 0 unless `allow_zero`.

    `error_code` gives the refusal its own API code (INVALID_AMOUNT_FORMAT on balance endpoints)."""

    def __init__(self, *, allow_zero: bool = False, error_code: str = "invalid", **kwargs):
        self.allow_zero = allow_zero
        self.error_code = error_code
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        try:
            return money_parse(data, allow_zero=self.allow_zero)
        except MoneyFormatError as exc:
            raise serializers.ValidationError(str(exc), code=self.error_code) from None

    def to_representation(self, value):
        return value if isinstance(value, str) else f"{value:.2f}"


@extend_schema_field({"type": "string", "enum": ["USD"], "default": "USD"})
class CurrencyField(serializers.Field):
    """Only "USD" (API.md §1.1); anything else is 400 INVALID_CURRENCY."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("default", "USD")
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if data != "USD":
            raise serializers.ValidationError("only USD is supported", code="INVALID_CURRENCY")
        return data

    def to_representation(self, value):
        return value


class StringOnlyMixin:
    """Refuse JSON numbers and booleans where a string is expected (DRF's CharField would turn
    12 into "12" and true into "True")."""

    default_error_messages = {"not_a_string": "must be a string"}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class StringField(StringOnlyMixin, serializers.CharField):
    """A JSON string kept as sent (no trimming), bounded by `max_length`."""

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)


class PublicIdField(StringOnlyMixin, serializers.RegexField):
    """An id as API.md §1.1 writes them (`usr_…`, `ord_…`); bounded, no NUL, no spaces."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 64)
        super().__init__(ID_PATTERN, **kwargs)
        self.error_messages["invalid"] = "must be an id such as usr_… (letters, digits and _ only)"


class TextField(StringOnlyMixin, serializers.CharField):
    """Free text with a bound (TEXT_MAX unless given); blank allowed unless said otherwise."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", TEXT_MAX)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)


class MetadataField(serializers.DictField):
    """A small JSON object of the integrator's own (strings, numbers, booleans; no nesting)."""

    MAX_KEYS = 50

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_null", True)
        super().__init__(child=serializers.JSONField(), **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if len(value) > self.MAX_KEYS:
            raise serializers.ValidationError(f"at most {self.MAX_KEYS} keys")
        for key, item in value.items():
            if len(key) > 100 or "\x00" in key:
                raise serializers.ValidationError("keys are at most 100 characters, without NUL")
            if isinstance(item, dict | list):
                raise serializers.ValidationError(f"{key}: values are strings, numbers, booleans or null")
            if isinstance(item, str) and (len(item) > 500 or "\x00" in item):
                raise serializers.ValidationError(f"{key}: strings are at most 500 characters, without NUL")
        return value


# --- Outputs shared by many resources --------------------------------------------------------


class TimestampField(serializers.CharField):
    """ISO-8601 UTC with milliseconds and Z, as the API writes every timestamp."""

    def __init__(self, **kwargs):
        kwargs.setdefault("read_only", True)
        super().__init__(**kwargs)


extend_schema_field({"type": "string", "format": "date-time", "example": "2026-01-12T10:00:00.000Z"})(TimestampField)


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField(help_text="always has requestId; validation errors add fields[]")


class ErrorEnvelopeSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


class MetaSerializer(serializers.Serializer):
    requestId = serializers.CharField()
    timestamp = TimestampField()


# --- Platform endpoints --------------------------------------------------------------------------


class ApiKeyCreateInput(StrictSerializer):
    name = StringField(min_length=1, max_length=100)
    scopes = serializers.ListField(child=StringField(min_length=1, max_length=50), min_length=1, max_length=20)
    marketplaceId = StringField(required=False, allow_blank=False, max_length=100)


class TokenMintInput(StrictSerializer):
    ttl_seconds = serializers.IntegerField(required=False, min_value=60, max_value=3600)


class ApiKeySerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    scopes = serializers.ListField(child=serializers.CharField())
    marketplaceId = serializers.CharField(allow_null=True)
    lastUsedAt = TimestampField(allow_null=True)
    createdAt = TimestampField()
    revokedAt = TimestampField(allow_null=True)


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(help_text="the full secret, shown once")
    api_key = serializers.CharField(help_text="alias of key")
    apiKey = serializers.CharField(help_text="alias of key")


class ApiKeyRevokedSerializer(serializers.Serializer):
    id = serializers.CharField()
    status = serializers.CharField(help_text='always "revoked"')
    revokedAt = TimestampField()


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="ohk_tok_…")
    expiresAt = TimestampField()


class MeSerializer(serializers.Serializer):
    apiKeyId = serializers.CharField()
    apiKeyName = serializers.CharField()
    scopes = serializers.ListField(child=serializers.CharField())
    marketplaceId = serializers.CharField(required=False)


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["healthy", "degraded", "unhealthy"])
    version = serializers.CharField()
    timestamp = TimestampField()


class DependencySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["healthy", "degraded", "unhealthy"])
    latency = serializers.FloatField(required=False, help_text="milliseconds")
    mode = serializers.CharField(required=False)
    error = serializers.CharField(required=False)


class HealthDetailedSerializer(HealthSerializer):
    dependencies = serializers.DictField(child=DependencySerializer())


class LimitSerializer(serializers.Serializer):
    min = MoneyField()
    max = MoneyField()


class ConfigSerializer(serializers.Serializer):
    currencies = serializers.ListField(child=serializers.CharField())
    limits = serializers.DictField(child=LimitSerializer())
    features = serializers.DictField(child=serializers.BooleanField())
    providers = serializers.DictField(child=serializers.CharField())
    network = serializers.CharField()
    sandbox = serializers.BooleanField()
    version = serializers.CharField()


class AuditLogSerializer(serializers.Serializer):
    id = serializers.CharField()
    occurredAt = TimestampField()
    action = serializers.CharField()
    resourceType = serializers.CharField()
    resourceId = serializers.CharField()
    payloadBefore = serializers.JSONField(allow_null=True)
    payloadAfter = serializers.JSONField(allow_null=True)
    actorType = serializers.CharField()
    actorId = serializers.CharField()
    result = serializers.ChoiceField(choices=["SUCCESS", "FAILURE", "DISCREPANCY_FOUND"])
    correlationId = serializers.CharField(allow_null=True)
    userId = serializers.CharField(allow_null=True)
    idempotencyKey = serializers.CharField(allow_null=True)
