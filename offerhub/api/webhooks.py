"""Provider webhook endpoints (API.md §13): public, signed by the provider, never by an API key.

The view hands the raw request bytes to offerhub.webhooks, which checks the signature over them
before any parsing; DRF's parsers never see the body (re-serialised JSON would not verify).
"""

import io

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers

from offerhub.api.base import PublicApiView, StrictJSONParser
from offerhub.api.envelope import api_response
from offerhub.api.errors import error_response
from offerhub.api.serializers import StringField, validated
from offerhub.errors import ServiceError
from offerhub.models import WebhookDelivery
from offerhub.webhooks import webhook_receive


class WebhookInput(serializers.Serializer):
    """A provider's event: a JSON object; fields a provider adds later are kept, not refused."""

    type = StringField(max_length=100, required=False)
    data = serializers.DictField(required=False)

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"body": ["must be a JSON object"]})
        return super().to_internal_value(data)


class AirtmWebhookInput(WebhookInput):
    """Airtm's own `{type, data}` or the original's `{eventId, eventType, occurredAt, data}`."""

    eventType = StringField(max_length=100, required=False)
    eventId = StringField(max_length=255, required=False)
    occurredAt = StringField(max_length=64, required=False)


class TrustlessWorkWebhookInput(WebhookInput):
    """`{type, event_id, data: {contract_id, order_id, status, ...}}`."""

    event_id = StringField(max_length=255, required=False)


def _parser(serializer_class):
    def parse(raw: bytes, request) -> dict:
        payload = StrictJSONParser().parse(io.BytesIO(raw), parser_context={"request": request})
        validated(serializer_class, payload)  # the shape; the processors read the payload itself
        return payload

    return parse


RECEIVED = inline_serializer(
    "WebhookReceived",
    fields={
        "status": serializers.CharField(),
        "processed": serializers.BooleanField(required=False),
        "duplicate": serializers.BooleanField(required=False),
    },
)


class ProviderWebhookView(PublicApiView):
    provider = ""
    input_class = AirtmWebhookInput

    def post(self, request):
        raw = request.body  # read before anything parses the stream; bounded by the request size limit
        parse = _parser(self.input_class)
        receipt = webhook_receive(
            provider=self.provider, raw_body=raw, headers=request.headers, parse=lambda body: parse(body, request)
        )
        if receipt.rejected:
            # Answered, not raised: the REJECTED row commits with the 401.
            return error_response(
                ServiceError("WEBHOOK_SIGNATURE_INVALID", "The webhook signature is invalid or its timestamp is stale")
            )
        if receipt.duplicate:
            return api_response({"status": "ok", "duplicate": True})
        return api_response({"status": "ok", "processed": receipt.processed})


class AirtmWebhookView(ProviderWebhookView):
    provider = WebhookDelivery.Provider.AIRTM
    input_class = AirtmWebhookInput

    @extend_schema(
        summary="Airtm events (Svix-signed)",
        tags=["webhooks"],
        request=AirtmWebhookInput,
        responses={200: RECEIVED, 400: OpenApiResponse(description="bad JSON"), 401: OpenApiResponse()},
    )
    def post(self, request):
        return super().post(request)


class TrustlessWorkWebhookView(ProviderWebhookView):
    provider = WebhookDelivery.Provider.TRUSTLESS_WORK
    input_class = TrustlessWorkWebhookInput

    @extend_schema(
        summary="Trustless Work escrow events (x-tw-signature)",
        tags=["webhooks"],
        request=TrustlessWorkWebhookInput,
        responses={200: RECEIVED, 400: OpenApiResponse(description="bad JSON"), 401: OpenApiResponse()},
    )
    def post(self, request):
        return super().post(request)
