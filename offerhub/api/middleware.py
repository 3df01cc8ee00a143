"""API requests skip the middleware only web pages need.

Django's MIDDLEWARE is one list for every request. Below this middleware it holds what pages
use: WhiteNoise (files under /static/), sessions, CommonMiddleware (a slash appended on 404),
CSRF, the session's user, messages, htmx and the 503 page for an unreachable database. No
request under /api/v1/ needs them: every path there resolves to a DRF view (the API's URLconf
ends with a catch-all NOT_FOUND view), which authenticates with a Bearer credential, never a
cookie (so CSRF, the session and its user do not apply: DRF's views are CSRF-exempt), answers
JSON, and maps every error, an unreachable database included, to the API envelope itself. So
an /api/v1/ request is resolved and its view called right here, at a fifth of the cost of
passing through them (a cost every API request paid).

Everything above this middleware in MIDDLEWARE still runs for the API: the correlation id,
SecurityMiddleware (HTTPS redirect, HSTS, nosniff, Referrer-Policy, COOP), the
Content-Security-Policy, the Permissions-Policy and X-Frame-Options. Pages keep the whole list.
"""

from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response

API_PREFIX = "/api/v1/"


class ApiPathMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        # The handler's own resolve-and-call step, without the view, template-response and
        # exception middleware of the list below (CSRF's process_view, the 503 page).
        handler = BaseHandler()
        handler._view_middleware = []
        handler._template_response_middleware = []
        handler._exception_middleware = []
        self.api_response = convert_exception_to_response(handler._get_response)

    def __call__(self, request):
        if not request.path_info.startswith(API_PREFIX):
            return self.get_response(request)
        response = self.api_response(request)
        # What CommonMiddleware adds: a length lets the server keep the connection open.
        if not response.streaming and not response.has_header("Content-Length"):
            response.headers["Content-Length"] = str(len(response.content))
        return response
