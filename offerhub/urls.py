from importlib import import_module

from django.conf import settings
from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe
from django.views.generic.base import RedirectView


class FaviconView(RedirectView):
    """Browsers ask for /favicon.ico whatever the page links: send them to the icon (static/favicon.svg)."""

    permanent = True

    def get_redirect_url(self, *args, **kwargs):
        return static("favicon.svg")


favicon = require_safe(cache_control(max_age=86400, public=True)(FaviconView.as_view()))

# Every /api/v1/ route in one list, the apps' first: offerhub.api.urls ends with the catch-all
# NOT_FOUND route. One list, not an include per app under the same prefix: Django tries the
# routes of a list one by one, but for every include it had to leave it recorded all its routes
# as tried (for the debug 404 page), which cost the routes found in a later one tens of microseconds.
api_v1 = [
    *import_module("marketplace.api_urls").urlpatterns,
    *import_module("payments.api_urls").urlpatterns,
    *import_module("escrow.api_urls").urlpatterns,
    *import_module("disputes.api_urls").urlpatterns,
    *import_module("hooks.api_urls").urlpatterns,
    path("", include("offerhub.api.urls")),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    # The most visited pages first (the home page, browsing, orders), for the same reason.
    path("", include("marketplace.urls")),
    path("", include("payments.urls")),
    path("", include("disputes.urls")),
    path("escrow/", include("escrow.urls")),
    path("admin/", admin.site.urls),
    path("favicon.ico", favicon, name="favicon"),
]

if settings.OFFERHUB_SANDBOX:
    urlpatterns.insert(0, path("sandbox/", include("sandbox.urls")))

handler404 = "marketplace.views.page_not_found"
handler500 = "marketplace.views.server_error"
