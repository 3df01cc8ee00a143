"""Response headers Django does not send itself (the Content-Security-Policy comes from django-csp)."""

from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.middleware import CheckableLazyObject
from csp.middleware import CSPMiddleware as DjangoCSPMiddleware
from csp.utils import build_policy
from django.conf import settings

# What a view or decorator may set on a response to change its policy (django-csp).
_CSP_RESPONSE_OVERRIDES = (
    "_csp_config",
    "_csp_update",
    "_csp_replace",
    "_csp_config_ro",
    "_csp_update_ro",
    "_csp_replace_ro",
    "_csp_exempt",
    "_csp_exempt_ro",
)


class CSPMiddleware(DjangoCSPMiddleware):
    """django-csp's middleware, which built the policy from the settings twice for every response
    (the policy and the report-only one): a response that changes nothing (no nonce used, no
    view's override or exemption, no header of its own, no excluded prefix) gets the headers
    built once for the settings' policy objects (rebuilt when settings replace them). Any other
    response is django-csp's own work, unchanged."""

    _built: tuple | None = None  # (policy setting, report-only setting, header, report-only header)

    def process_response(self, request, response):
        policy = getattr(settings, "CONTENT_SECURITY_POLICY", None)
        report_only = getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None)
        if (
            getattr(request, "_csp_nonce", None) is not None
            or (settings.DEBUG and response.status_code in (404, 500))
            or any(getattr(response, name, None) for name in _CSP_RESPONSE_OVERRIDES)
            or HEADER in response
            or HEADER_REPORT_ONLY in response
            or (policy or {}).get("EXCLUDE_URL_PREFIXES")
            or (report_only or {}).get("EXCLUDE_URL_PREFIXES")
        ):
            return super().process_response(request, response)
        built = self._built
        if built is None or built[0] is not policy or built[1] is not report_only:
            built = (policy, report_only, build_policy(), build_policy(report_only=True))
            self._built = built
        if built[2]:
            response[HEADER] = built[2]
        if built[3]:
            response[HEADER_REPORT_ONLY] = built[3]
        # As django-csp does: a nonce asked for after the header is written is an error.
        request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)
        return response


class PermissionsPolicyMiddleware:
    """Send settings.PERMISSIONS_POLICY on every response, unless a view set its own."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        return response
