from django.urls import path

from disputes import views

urlpatterns = [
    path("orders/<str:public_id>/dispute/", views.order_dispute_view, name="order-dispute"),
    path(
        "disputes/<str:dispute_id>/evidence/<str:evidence_id>/file/",
        views.dispute_evidence_file,
        name="dispute-evidence-file",
    ),
]
