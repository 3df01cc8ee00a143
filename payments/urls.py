from django.urls import path

from payments import views

urlpatterns = [
    path("wallet/", views.wallet_page, name="wallet"),
    path("wallet/simulate-deposit/", views.simulate_deposit, name="wallet-simulate-deposit"),
    path("wallet/test-recipient/", views.test_recipient_create, name="wallet-test-recipient"),
    path(
        "wallet/airtm/withdrawals/<str:withdrawal_id>/cancel/",
        views.airtm_withdrawal_cancel,
        name="wallet-airtm-withdrawal-cancel",
    ),
]
