"""Platform endpoints: health, config, API keys and identity (API.md §2-§3, §15)."""

from datetime import UTC, datetime

from django.conf import settings
from django.http import HttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerSplitView

from offerhub.api.authentication import api_token_mint, scopes_intersect
from offerhub.api.base import ANY_SCOPE, ApiView, PublicApiView
from offerhub.api.envelope import api_list_response, api_response
from offerhub.api.pagination import paginate
from offerhub.api.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeyCreateInput,
    ApiKeyRevokedSerializer,
    ApiKeySerializer,
    AuditLogSerializer,
    ConfigSerializer,
    HealthDetailedSerializer,
    HealthSerializer,
    MeSerializer,
    TokenMintInput,
    TokenSerializer,
    validated,
)
from offerhub.errors import ServiceError
from offerhub.filters import AuditLogFilter, rows_filtered
from offerhub.health import UNHEALTHY, health_report
from offerhub.models import ApiKey, AuditLog
from offerhub.money import money_format, money_parse
from offerhub.selectors import audit_logs_visible
from offerhub.services import api_key_create, api_key_revoke
from offerhub.timefmt import iso_now, iso_timestamp
from payments.providers import AIRTM, CRYPTO, payments_provider, rail_enabled


def _actor(request) -> dict:
    return {"actor_type": AuditLog.ActorType.API_KEY, "actor_id": request.auth.key_id}


class HealthView(PublicApiView):
    """Liveness only: answers as long as the process serves requests."""

    @extend_schema(responses=HealthSerializer, tags=["platform"], summary="Liveness")
    def get(self, request):
        return api_response({"status": "healthy", "version": settings.VERSION, "timestamp": iso_now()})


class HealthDetailedView(PublicApiView):
    @extend_schema(
        responses={200: HealthDetailedSerializer, 503: HealthDetailedSerializer},
        tags=["platform"],
        summary="Dependencies (503 when the database is down)",
    )
    def get(self, request):
        report = health_report()
        data = {"status": report["status"], "version": settings.VERSION, **report, "timestamp": iso_now()}
        return api_response(data, status=503 if report["status"] == UNHEALTHY else 200)


class ConfigView(PublicApiView):
    @extend_schema(responses=ConfigSerializer, tags=["platform"], summary="Limits, features and providers")
    def get(self, request):
        limits = {
            name: {bound: money_format(money_parse(value)) for bound, value in bounds.items()}
            for name, bounds in settings.OFFERHUB_LIMITS.items()
        }
        return api_response(
            {
                "currencies": ["USD"],
                "limits": limits,
                # What this server can do today: clients switch features on from these. The
                # payment rails follow OFFERHUB_PAYMENTS_PROVIDER; the crypto flags are [X].
                "features": {
                    **settings.OFFERHUB_FEATURES,
                    "airtm": rail_enabled(AIRTM),
                    "cryptoDeposits": rail_enabled(CRYPTO),
                    "cryptoWithdrawals": rail_enabled(CRYPTO),
                },
                # `payments` [X]: crypto, airtm or hybrid. `fiat` stays "airtm" (the only fiat rail).
                "providers": {"fiat": "airtm", "escrow": "trustless_work", "payments": payments_provider()},
                "network": settings.STELLAR_NETWORK,
                "sandbox": bool(settings.SANDBOX_PROVIDERS),
                "version": settings.VERSION,
            }
        )


def _visible_keys(principal):
    keys = ApiKey.objects.all()
    if principal.marketplace_id:
        keys = keys.filter(marketplace_id=principal.marketplace_id)
    return keys


class ApiKeyListCreateView(ApiView):
    required_scope = "support"

    @extend_schema(responses=ApiKeySerializer(many=True), tags=["api keys"], summary="List API keys")
    def get(self, request):
        page = paginate(_visible_keys(request.auth), params=request.query_params, id_field="id")
        return api_list_response(
            [key.as_api() for key in page.items], has_more=page.has_more, next_cursor=page.next_cursor
        )

    @extend_schema(
        request=ApiKeyCreateInput, responses={201: ApiKeyCreatedSerializer}, tags=["api keys"], summary="Create"
    )
    def post(self, request):
        data = validated(ApiKeyCreateInput, request.data)
        scopes = data["scopes"]
        principal = request.auth
        # A caller may only grant what it holds; unknown scope strings grant nothing and pass.
        known_requested = {scope for scope in scopes if scope in ("read", "write", "support", "*")}
        lacking = sorted(scope for scope in known_requested if not principal.has_scope(scope))
        if lacking:
            raise ServiceError(
                "INSUFFICIENT_SCOPE",
                "An API key cannot grant scopes it does not hold",
                details={"required_scope": lacking[0], "current_scopes": sorted(principal.scopes)},
            )
        marketplace_id = principal.marketplace_id or data.get("marketplaceId", "")
        api_key, secret = api_key_create(
            name=data["name"], scopes=scopes, marketplace_id=marketplace_id, **_actor(request)
        )
        return api_response({**api_key.as_api(), "key": secret, "api_key": secret, "apiKey": secret}, status=201)


class ApiKeyRevokeView(ApiView):
    required_scope = "support"

    @extend_schema(responses={200: ApiKeyRevokedSerializer}, tags=["api keys"], summary="Revoke")
    def delete(self, request, key_id):
        api_key = _visible_keys(request.auth).filter(pk=key_id).first()
        if api_key is None:
            raise ServiceError("API_KEY_NOT_FOUND", f"API key {key_id} not found")
        api_key = api_key_revoke(api_key=api_key, **_actor(request))
        return api_response({"id": api_key.id, "status": "revoked", "revokedAt": iso_timestamp(api_key.revoked_at)})


class ApiTokenMintView(ApiView):
    required_scope = "write"

    @extend_schema(request=TokenMintInput, responses={201: TokenSerializer}, tags=["api keys"], summary="Mint a token")
    def post(self, request, key_id):
        data = validated(TokenMintInput, request.data)
        principal = request.auth
        if principal.via_token:
            raise ServiceError(
                "INSUFFICIENT_SCOPE",
                "Tokens cannot mint tokens; use the API key itself",
                details={"required_scope": "write", "current_scopes": sorted(principal.scopes)},
            )
        api_key = _visible_keys(principal).filter(pk=key_id, revoked_at__isnull=True).first()
        if api_key is None:
            raise ServiceError("API_KEY_NOT_FOUND", f"API key {key_id} not found")
        if api_key.id != principal.key_id and not principal.has_scope("support"):
            raise ServiceError(
                "INSUFFICIENT_SCOPE",
                "Minting a token for another key requires the 'support' scope",
                details={"required_scope": "support", "current_scopes": sorted(principal.scopes)},
            )
        scopes = scopes_intersect(frozenset(api_key.scopes), principal.scopes)
        ttl = data.get("ttl_seconds", settings.OFFERHUB_TOKEN_DEFAULT_TTL_SECONDS)
        token, expires_at = api_token_mint(api_key=api_key, scopes=scopes, ttl_seconds=ttl)
        return api_response(
            {"token": token, "expiresAt": iso_timestamp(datetime.fromtimestamp(expires_at, UTC))}, status=201
        )


class MeView(ApiView):
    required_scope = ANY_SCOPE

    @extend_schema(responses=MeSerializer, tags=["api keys"], summary="The calling key")
    def get(self, request):
        principal = request.auth
        data = {"apiKeyId": principal.key_id, "apiKeyName": principal.name, "scopes": sorted(principal.scopes)}
        if principal.marketplace_id:
            data["marketplaceId"] = principal.marketplace_id
        return api_response(data)


class EventStreamView(ApiView):
    """GET /events reaches Django only under a WSGI server (gunicorn): the ASGI application
    serves it beside Django (offerhub.sse), so this says where it is instead of holding a
    thread per stream. Here for the schema too."""

    required_scope = "read"

    @extend_schema(
        tags=["events"],
        summary="Stream events (server-sent events)",
        description=(
            "`text/event-stream`, no envelope: `id:` (eventId), `event:` (eventType), `data:` (the DomainEvent "
            "on one line); `event: ping` every 30 s; `retry: 3000` first. Resume with `Last-Event-ID` (or "
            "`since`/`cursor`): an `evt_` id, an ISO-8601 timestamp or epoch milliseconds; events come in commit "
            "order with no gap or duplicate between replay and live. At most 10 streams per key (429). "
            "Served by the ASGI server (docs/events.md)."
        ),
        parameters=[
            OpenApiParameter("types", str, description="event types, comma-separated or repeated; `order.*`, `*`"),
            OpenApiParameter("resources", str, description="aggregate types (alias resourceTypes)"),
            OpenApiParameter("user_id", str, description="events concerning this user"),
            OpenApiParameter("since", str, description="replay cursor when no Last-Event-ID (alias cursor)"),
            OpenApiParameter("token", str, description="a short-lived ohk_tok_ token, for EventSource"),
        ],
        responses={200: OpenApiResponse(description="text/event-stream")},
    )
    def get(self, request):
        raise ServiceError(
            "SERVICE_UNAVAILABLE",
            "The event stream is served by the ASGI server (uvicorn, the `ws` service): route /api/v1/events there",
            details={"docs": "docs/deployment.md#tls-proxy"},
        )


class AuditLogListView(ApiView):
    required_scope = "support"
    filter_backends = [DjangoFilterBackend]
    filterset_class = AuditLogFilter
    queryset = AuditLog.objects.none()  # for the schema; the rows are the key's own below

    @extend_schema(responses=AuditLogSerializer(many=True), tags=["audit"], summary="Audit log")
    def get(self, request):
        visible = audit_logs_visible(marketplace_id=request.auth.marketplace_id)
        rows = rows_filtered(view=self, request=request, rows=visible)
        page = paginate(rows, params=request.query_params, id_field="public_id", time_field="occurred_at")
        return api_list_response(
            [row.as_api() for row in page.items], has_more=page.has_more, next_cursor=page.next_cursor
        )


class NotFoundView(PublicApiView):
    """Every unknown path under /api/v1 answers NOT_FOUND in the envelope, whatever the method."""

    in_schema = False

    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def _not_found(self, request, *args, **kwargs) -> HttpResponse:
        raise ServiceError("NOT_FOUND", f"No route for {request.method} {request.path}")

    get = post = put = patch = delete = head = options = _not_found


class OpenApiSchemaView(SpectacularJSONAPIView):
    """GET /openapi.json: the whole API described (public, like the original's /docs)."""

    in_schema = False


class ApiDocsView(SpectacularSwaggerSplitView):
    """GET /docs/: Swagger UI from vendored assets; its start-up script and styles are separate
    files, as the Content-Security-Policy requires."""

    in_schema = False
    template_name = "api/swagger_ui.html"
