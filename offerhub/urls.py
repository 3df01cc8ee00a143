from django.conf import settings
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
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
