from django.urls import path

from payments import views

urlpatterns = [
    path("wallet/", views.wallet_page, name="wallet"),
    path("wallet/simulate-deposit/", views.simulate_deposit, name="wallet-simulate-deposit"),
    path("wallet/test-recipient/", views.test_recipient_create, name="wallet-test-recipient"),
    path("wallet/topups/", views.topup_start, name="wallet-topup-start"),
    path("wallet/topups/<str:topup_id>/", views.topup_page, name="wallet-topup"),
    path("wallet/topups/<str:topup_id>/status/", views.topup_status, name="wallet-topup-status"),
    path("wallet/topups/<str:topup_id>/cancel/", views.topup_cancel_view, name="wallet-topup-cancel"),
    path(
        "wallet/airtm/withdrawals/<str:withdrawal_id>/cancel/",
        views.airtm_withdrawal_cancel,
        name="wallet-airtm-withdrawal-cancel",
    ),
]
