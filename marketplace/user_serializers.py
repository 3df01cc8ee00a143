"""Input and output of the users endpoints (API.md §4)."""

from rest_framework import serializers

from marketplace.models import User
from offerhub.api.serializers import (
    AliasedInput,
    MetadataField,
    MoneyField,
    StrictSerializer,
    StringField,
    StringOnlyMixin,
    TimestampField,
)

EXTERNAL_ID_MAX = User._meta.get_field("external_user_id").max_length
EMAIL_MAX = User._meta.get_field("email").max_length


class UpperCaseChoiceField(serializers.ChoiceField):
    """An enum the original accepted in any case (`"seller"`), stored upper-case (API.md §4 [C])."""

    def to_internal_value(self, data):
        return super().to_internal_value(data.upper() if isinstance(data, str) else data)


class StringEmailField(StringOnlyMixin, serializers.EmailField):
    pass


class UserCreateInput(AliasedInput):
    externalUserId = StringField(
        max_length=EXTERNAL_ID_MAX, help_text="the marketplace's own user id; alias `external_user_id`"
    )
    email = StringEmailField(required=False, allow_null=True, max_length=EMAIL_MAX)
    type = UpperCaseChoiceField(User.Type.choices, required=False, default=User.Type.BOTH)
    metadata = MetadataField()

    class Meta:
        aliases = {"external_user_id": "externalUserId"}


class UserBalanceOutput(serializers.Serializer):
    available = MoneyField()
    reserved = MoneyField()
    currency = serializers.ChoiceField(["USD"])


class UserOutput(serializers.Serializer):
    id = serializers.CharField()
    externalUserId = serializers.CharField(allow_null=True, help_text="null for members who signed up on the web")
    email = serializers.CharField(allow_null=True)
    type = serializers.ChoiceField(User.Type.choices)
    status = serializers.ChoiceField(User.Status.choices)
    balance = UserBalanceOutput()
    airtmLinked = serializers.BooleanField()
    airtmUserId = serializers.CharField(allow_null=True)
    airtmLinkedAt = TimestampField(allow_null=True)
    metadata = serializers.DictField(allow_null=True)
    createdAt = TimestampField()
    updatedAt = TimestampField()


class AirtmLinkInput(StrictSerializer):
    email = StringEmailField(max_length=EMAIL_MAX, help_text="the e-mail of the member's Airtm account")


class AirtmLinkOutput(serializers.Serializer):
    userId = serializers.CharField()
    airtmUserId = serializers.CharField()
    airtmLinkedAt = TimestampField()
    eligible = serializers.BooleanField()
    email = serializers.EmailField()
    airtmEmail = serializers.EmailField(help_text="= email, the SDK's name")
    linkedAt = TimestampField(help_text="= airtmLinkedAt, the SDK's name")
