"""The product's URLs plus `bench/bare`, the load phase's floor: a DRF view with no
authentication, no permission check and no database, served by the same process."""

from django.urls import include, path
from rest_framework.response import Response
from rest_framework.views import APIView


class BareView(APIView):
    authentication_classes = []
    permission_classes = []

    def get(self, request):
        return Response({"status": "ok"})


urlpatterns = [
    path("bench/bare", BareView.as_view()),
    path("", include("offerhub.urls")),
]

handler404 = "marketplace.views.page_not_found"
handler500 = "marketplace.views.server_error"
