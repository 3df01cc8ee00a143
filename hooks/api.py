"""Webhook endpoints API (API.md §14): create, list, read, delete, and an endpoint's deliveries."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers

from hooks.models import WebhookEndpoint
from hooks.services import endpoints_visible, webhook_endpoint_create, webhook_endpoint_delete
from offerhub.api.base import ApiView
from offerhub.api.envelope import api_list_response, api_response
from offerhub.api.pagination import paginate
from offerhub.api.serializers import StrictSerializer, StringField, TimestampField, validated
from offerhub.errors import ServiceError
from offerhub.models import AuditLog

EVENT_PATTERN = r"^(\*|[a-z][a-z_]{0,49}(\.[a-z_]{1,50})*(\.\*)?)$"
TAG = "webhook endpoints"


class WebhookEndpointCreateInput(StrictSerializer):
    url = StringField(min_length=1, max_length=2048, help_text="https (http only when DEBUG); public hosts only")
    events = serializers.ListField(
        child=serializers.RegexField(EVENT_PATTERN, max_length=100),
        min_length=1,
        max_length=50,
        required=False,
        help_text='event types or wildcards, e.g. ["order.*", "dispute.opened"]; default ["*"]',
    )
    description = StringField(required=False, allow_blank=True, max_length=255)


class WebhookEndpointSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="whe_…")
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField())
    description = serializers.CharField()
    enabled = serializers.BooleanField()
    disabledReason = serializers.CharField(allow_null=True)
    createdAt = TimestampField()


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(help_text="whsec_…, the signing secret: shown only in this answer")


class WebhookEndpointDeletedSerializer(serializers.Serializer):
    id = serializers.CharField()
    deleted = serializers.BooleanField()


class OutgoingDeliverySerializer(serializers.Serializer):
    id = serializers.CharField(help_text="whd_…")
    eventId = serializers.CharField()
    eventType = serializers.CharField()
    attempt = serializers.IntegerField(help_text="attempts made so far")
    status = serializers.ChoiceField(choices=["pending", "succeeded", "failed"])
    responseStatus = serializers.IntegerField(allow_null=True)
    nextAttemptAt = TimestampField(allow_null=True)
    createdAt = TimestampField()


def _actor(request) -> dict:
    return {"actor_type": AuditLog.ActorType.API_KEY, "actor_id": request.auth.key_id}


def _endpoint_or_404(request, endpoint_id: str) -> WebhookEndpoint:
    endpoint = endpoints_visible(marketplace_id=request.auth.marketplace_id).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise ServiceError("NOT_FOUND", f"Webhook endpoint {endpoint_id} not found")
    return endpoint


class WebhookEndpointListCreateView(ApiView):
    required_scope = "support"

    @extend_schema(responses=WebhookEndpointSerializer(many=True), tags=[TAG], summary="List webhook endpoints")
    def get(self, request):
        """The key's marketplace's endpoints (every one for a platform key); secrets are never shown."""
        rows = endpoints_visible(marketplace_id=request.auth.marketplace_id)
        page = paginate(rows, params=request.query_params, id_field="id")
        return api_list_response(
            [endpoint.as_api() for endpoint in page.items], has_more=page.has_more, next_cursor=page.next_cursor
        )

    @extend_schema(
        request=WebhookEndpointCreateInput,
        responses={201: WebhookEndpointCreatedSerializer},
        tags=[TAG],
        summary="Create a webhook endpoint",
    )
    def post(self, request):
        """Every domain event of the key's marketplace matching `events` is POSTed to `url`, signed
        with the returned `secret` (shown only here)."""
        data = validated(WebhookEndpointCreateInput, request.data)
        endpoint = webhook_endpoint_create(
            url=data["url"],
            events=data.get("events") or ["*"],
            description=data.get("description", ""),
            marketplace_id=request.auth.marketplace_id or "",
            **_actor(request),
        )
        return api_response({**endpoint.as_api(), "secret": endpoint.secret}, status=201)


class WebhookEndpointDetailView(ApiView):
    required_scope = "support"

    @extend_schema(responses=WebhookEndpointSerializer, tags=[TAG], summary="Read a webhook endpoint")
    def get(self, request, endpoint_id):
        return api_response(_endpoint_or_404(request, endpoint_id).as_api())

    @extend_schema(responses=WebhookEndpointDeletedSerializer, tags=[TAG], summary="Delete a webhook endpoint")
    def delete(self, request, endpoint_id):
        """It stops receiving at once; deliveries not yet made to it are not attempted."""
        endpoint = webhook_endpoint_delete(endpoint=_endpoint_or_404(request, endpoint_id), **_actor(request))
        return api_response({"id": endpoint.id, "deleted": True})


class WebhookDeliveryListView(ApiView):
    required_scope = "support"

    @extend_schema(
        responses=OutgoingDeliverySerializer(many=True), tags=[TAG], summary="A webhook endpoint's deliveries"
    )
    def get(self, request, endpoint_id):
        """Newest first; `attempt` counts the attempts made so far."""
        endpoint = _endpoint_or_404(request, endpoint_id)
        page = paginate(endpoint.deliveries.all(), params=request.query_params, id_field="public_id")
        return api_list_response(
            [delivery.as_api() for delivery in page.items], has_more=page.has_more, next_cursor=page.next_cursor
        )
