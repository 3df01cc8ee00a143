"""The OpenAPI description of /api/v1 (drf-spectacular), with the conventions of API.md §1.

Views declare their request and resource serializers with `@extend_schema`; this schema class
adds what every endpoint shares, so no view repeats it: the success envelope around the
resource (§1.5, with cursors on lists), the error envelope for every error status (§1.7),
the Bearer key (§1.2) and the Idempotency-Key header on mutating requests (§1.4).
"""

import inspect

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter

from offerhub.api.idempotency import MUTATING_METHODS
from offerhub.api.serializers import ID_PATTERN, ErrorEnvelopeSerializer, MetaSerializer, StrictSerializer

ERROR_STATUSES = {
    "400": "Invalid input: `VALIDATION_ERROR` with `details.fields`, or the field's own code",
    "401": "Missing, malformed or invalid API key",
    "403": "The key lacks the scope",
    "404": "No such resource (or not visible to this key's marketplace)",
    "409": "Refused in the current state, or an Idempotency-Key conflict",
    "413": "Body larger than the server accepts",
    "415": "Body that is not application/json",
    "422": "Refused by a money rule (e.g. INSUFFICIENT_FUNDS)",
    "429": "Rate limited; see Retry-After",
    "502": "A provider (Trustless Work, Airtm, Stellar) answered with an error",
    "503": "A provider is unavailable",
    "504": "A provider did not answer in time",
}
PUBLIC_ERROR_STATUSES = ("400", "404", "429")
RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "offerhub.api.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key `ohk_{live|test}_key_…`, the master key, or a short-lived `ohk_tok_…` token",
        }


# What ApiView.check_path_and_query lets through to any view: at most 255 characters, none below 0x20.
PATH_PARAMETER = {"maxLength": 255, "pattern": "^[^/\\x00-\\x1f]+$"}


class OfferHubAutoSchema(AutoSchema):
    def _is_public(self) -> bool:
        return not getattr(self.view, "authentication_classes", None)

    def _resolve_path_parameters(self, variables):
        parameters = super()._resolve_path_parameters(variables)
        for parameter in parameters:
            if parameter["schema"].get("type") == "string":
                parameter["schema"] = {**parameter["schema"], **PATH_PARAMETER}
        return parameters

    def get_description(self) -> str:
        """The handler's docstring, or the view's own: never one inherited from a base view,
        which speaks to the people who write views, not to those who call them."""
        handler = getattr(self.view, self.method.lower(), None)
        own = type(self.view).__dict__.get("__doc__")
        return inspect.cleandoc(getattr(handler, "__doc__", None) or own or "")

    def get_override_parameters(self):
        parameters = list(super().get_override_parameters())
        if self.method in MUTATING_METHODS and not self._is_public():
            parameters.append(
                OpenApiParameter(
                    "Idempotency-Key",
                    str,
                    OpenApiParameter.HEADER,
                    required=False,
                    pattern=r"^[\x21-\x7e]{1,255}$",  # printable ASCII, as idempotency_start checks
                    description="Retries with the same key and body replay the first answer (API.md §1.4)",
                )
            )
        if self.method == "GET" and self._is_list_view():
            parameters += [
                OpenApiParameter(
                    "limit",
                    {"type": "integer", "minimum": 1},
                    description="1-100, default 20 (larger values are clamped)",
                ),
                OpenApiParameter(
                    "cursor",
                    {"type": "string", "pattern": ID_PATTERN},
                    description="the id of the previous page's last item",
                ),
            ]
        return parameters

    def _map_serializer(self, serializer, direction, bypass_extensions=False):
        """Strict inputs refuse unknown fields: say so, and list their aliases (API.md's [C] names)."""
        schema = super()._map_serializer(serializer, direction, bypass_extensions)
        if direction == "request" and isinstance(serializer, StrictSerializer):
            properties = schema.setdefault("properties", {})
            aliases = getattr(getattr(serializer, "Meta", None), "aliases", ())
            for alias in aliases:
                target = aliases[alias] if isinstance(aliases, dict) else None
                described = {**properties.get(target, {}), "description": f"alias of {target}"} if target else {}
                properties.setdefault(alias, described)
            schema["additionalProperties"] = False
        return schema

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        meta = self.resolve_serializer(MetaSerializer, direction).ref
        for status, response in responses.items():
            content = response.get("content", {}).get("application/json")
            if status.startswith("2") and content is not None:
                content["schema"] = _envelope(content["schema"], meta)
        error = self.resolve_serializer(ErrorEnvelopeSerializer, direction).ref
        statuses = PUBLIC_ERROR_STATUSES if self._is_public() else ERROR_STATUSES
        for status in statuses:
            responses.setdefault(
                status, {"description": ERROR_STATUSES[status], "content": {"application/json": {"schema": error}}}
            )
        for response in responses.values():
            response.setdefault("headers", {}).update(
                {name: {"schema": {"type": "integer"}} for name in RATE_LIMIT_HEADERS}
            )
        return responses


def _envelope(resource: dict, meta: dict) -> dict:
    """{success, data, meta}, with hasMore/nextCursor/pagination when `data` is a list."""
    properties = {"success": {"type": "boolean", "enum": [True]}, "data": resource, "meta": meta}
    if resource.get("type") == "array":
        cursor = {"type": "string", "nullable": True}
        properties |= {
            "hasMore": {"type": "boolean"},
            "nextCursor": cursor,
            "pagination": {
                "type": "object",
                "properties": {"hasMore": {"type": "boolean"}, "nextCursor": cursor},
                "required": ["hasMore", "nextCursor"],
            },
        }
    return {"type": "object", "properties": properties, "required": list(properties)}


def schema_paths_only_api(endpoints):
    """Preprocessing hook: the API's own routes, not the catch-all NOT_FOUND route nor the schema views."""
    return [
        (path.rstrip("/"), path_regex, method, callback)  # routes accept a trailing slash; API.md writes none
        for path, path_regex, method, callback in endpoints
        if path.startswith("/api/v1/") and getattr(callback.cls, "in_schema", True)
    ]
