from django.urls import path

from escrow import views

urlpatterns = [
    path("", views.escrow_lookup, name="escrow-lookup"),
    path("<str:contract_id>/", views.escrow_detail, name="escrow-detail"),
]
