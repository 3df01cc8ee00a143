from django.urls import re_path

from escrow import api

urlpatterns = [
    re_path(r"^escrows/(?P<contract_id>[^/]+)/?$", api.EscrowDetailView.as_view(), name="escrow-api"),
]
