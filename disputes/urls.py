from django.urls import path

from disputes import views

urlpatterns = [
    path("orders/<str:public_id>/dispute/", views.order_dispute_view, name="order-dispute"),
]
