from django.urls import path

from disputes import views

urlpatterns = [
    path("orders/<str:public_id>/dispute/", views.order_dispute_view, name="order-dispute"),
    path("orders/<str:public_id>/dispute/evidence/", views.dispute_evidence_view, name="order-dispute-evidence"),
    path("orders/<str:public_id>/dispute/messages/", views.dispute_message_view, name="order-dispute-message"),
    path("orders/<str:public_id>/dispute/withdraw/", views.dispute_withdraw_view, name="order-dispute-withdraw"),
    path(
        "disputes/<str:dispute_id>/evidence/<str:evidence_id>/file/",
        views.dispute_evidence_file,
        name="dispute-evidence-file",
    ),
]
