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

urlpatterns = [
    path("favicon.ico", favicon, name="favicon"),
    path("admin/", admin.site.urls),
    # App endpoints first: offerhub.api.urls ends with the catch-all NOT_FOUND route.
    path("api/v1/", include("marketplace.api_urls")),
    path("api/v1/", include("payments.api_urls")),
    path("api/v1/", include("escrow.api_urls")),
    path("api/v1/", include("disputes.api_urls")),
    path("api/v1/", include("hooks.api_urls")),
    path("api/v1/", include("offerhub.api.urls")),
    path("", include("payments.urls")),
    path("escrow/", include("escrow.urls")),
    path("", include("disputes.urls")),
    path("", include("marketplace.urls")),
]

if settings.OFFERHUB_SANDBOX:
    urlpatterns.insert(0, path("sandbox/", include("sandbox.urls")))

handler404 = "marketplace.views.page_not_found"
handler500 = "marketplace.views.server_error"
