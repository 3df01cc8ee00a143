"""Strict input fields shared by the API modules, on top of offerhub.api.serializers.

DRF's CharField turns 5 into "5" and True into "True"; a JSON number or boolean where the
contract says string is refused here instead. Aliases keep the original's and the SDK's field
names working (API.md marks them [C]) while errors name the field the client actually sent.
"""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from offerhub.api.serializers import PublicIdField, StrictSerializer, TextField


def validated(serializer_class, data) -> dict:
    """The validated input; a refusal raises DRF's ValidationError, which the API answers once
    (offerhub.api.errors) as a 400 naming each bad field."""
    serializer = serializer_class(data={} if data is None else data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class StringOnlyMixin:
    """Refuse JSON numbers and booleans where a string is expected (DRF's CharField accepts them)."""

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


class StringTextField(StringOnlyMixin, TextField):
    pass


class StringIdField(StringOnlyMixin, PublicIdField):
    pass


@extend_schema_field({"type": "string", "pattern": r"^[0-9]+\.[0-9]{2}$", "example": "100.00"})
class MoneyOutputField(serializers.CharField):
    """An amount as the API writes it: a string with exactly two decimals."""


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
