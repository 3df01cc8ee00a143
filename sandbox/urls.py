from django.urls import path

from sandbox import views

app_name = "sandbox"

urlpatterns = [
    path("horizon/", views.horizon_root, name="horizon-root"),
    path("horizon/accounts/<str:account_id>", views.account_detail, name="horizon-account"),
    path("horizon/accounts/<str:account_id>/payments", views.account_payments, name="horizon-account-payments"),
    path("horizon/payments", views.payments, name="horizon-payments"),
    path("horizon/transactions", views.submit_transaction, name="horizon-transactions"),
    path("horizon/transactions/<str:tx_hash>", views.transaction_detail, name="horizon-transaction"),
    path("horizon/friendbot", views.friendbot, name="horizon-friendbot"),
    path("horizon/faucet", views.faucet, name="horizon-faucet"),
    path("trustless-work/", views.trustless_work_root, name="trustless-work-root"),
    path("airtm/v2/", views.airtm_root, name="airtm-root"),
]
