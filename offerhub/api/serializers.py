"""Input serializers. Unknown body fields are rejected, as API.md §1.1 requires."""

from rest_framework import serializers


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


class ApiKeyCreateInput(StrictSerializer):
    name = serializers.CharField(min_length=1, max_length=100)
    scopes = serializers.ListField(
        child=serializers.CharField(min_length=1, max_length=50), min_length=1, max_length=20
    )
    marketplaceId = serializers.CharField(required=False, allow_blank=False, max_length=100)


class TokenMintInput(StrictSerializer):
    ttl_seconds = serializers.IntegerField(required=False, min_value=60, max_value=3600)
