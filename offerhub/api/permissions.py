"""Scope checks (API.md §1.3): exact scopes, `*` passes every check."""

from rest_framework.permissions import BasePermission

from offerhub.errors import ServiceError

ANY_SCOPE = "any"


class HasRequiredScope(BasePermission):
    def has_permission(self, request, view) -> bool:
        required = getattr(view, "required_scopes", {}).get(request.method, getattr(view, "required_scope", None))
        if required is None:  # public endpoint
            return True
        principal = request.auth
        if principal is None:
            raise ServiceError("UNAUTHORIZED", "Authorization header with a Bearer API key is required")
        if required == ANY_SCOPE or principal.has_scope(required):
            return True
        raise scope_refusal(principal, required)


def scope_refusal(principal, required: str) -> ServiceError:
    return ServiceError(
        "INSUFFICIENT_SCOPE",
        f"This API key lacks the '{required}' scope",
        details={"required_scope": required, "current_scopes": sorted(principal.scopes)},
    )
