from django.urls import re_path

from payments import api, api_topups


def route(pattern: str, view, name: str):
    return re_path(rf"^{pattern}/?$", view, name=name)


USER = r"users/(?P<user_id>[^/]+)"

urlpatterns = [
    route(f"{USER}/balance", api.BalanceView.as_view(), "balance"),
    route(f"{USER}/balance/verify", api.BalanceVerifyView.as_view(), "balance-verify"),
    route(f"{USER}/balance/sync", api.BalanceSyncView.as_view(), "balance-sync"),
    route(f"{USER}/balance/credit", api.BalanceCreditView.as_view(), "balance-credit"),
    route(f"{USER}/balance/debit", api.BalanceDebitView.as_view(), "balance-debit"),
    route(f"{USER}/balance/reserve", api.BalanceReserveView.as_view(), "balance-reserve"),
    route(f"{USER}/balance/cancel-reservation", api.BalanceCancelReservationView.as_view(), "balance-cancel"),
    route(f"{USER}/balance/release", api.BalanceReleaseView.as_view(), "balance-release"),
    route(f"{USER}/balance/deduct-reserved", api.BalanceDeductReservedView.as_view(), "balance-deduct"),
    route(f"{USER}/wallet", api.WalletView.as_view(), "wallet"),
    route(f"{USER}/wallet/deposit", api.WalletDepositView.as_view(), "wallet-deposit"),
    route(f"{USER}/wallet/transactions", api.WalletTransactionsView.as_view(), "wallet-transactions"),
    route("withdrawals", api.WithdrawalListCreateView.as_view(), "withdrawals"),
    route(r"withdrawals/(?P<withdrawal_id>[^/]+)", api.WithdrawalDetailView.as_view(), "withdrawal"),
    route(r"withdrawals/(?P<withdrawal_id>[^/]+)/refresh", api.WithdrawalRefreshView.as_view(), "withdrawal-refresh"),
    route(r"withdrawals/(?P<withdrawal_id>[^/]+)/commit", api.WithdrawalCommitView.as_view(), "withdrawal-commit"),
    route("topups", api_topups.TopupListCreateView.as_view(), "topups"),
    route(r"topups/(?P<topup_id>[^/]+)", api_topups.TopupDetailView.as_view(), "topup"),
    route(r"topups/(?P<topup_id>[^/]+)/refresh", api_topups.TopupRefreshView.as_view(), "topup-refresh"),
    route(r"topups/(?P<topup_id>[^/]+)/cancel", api_topups.TopupCancelView.as_view(), "topup-cancel"),
    route(r"topups/(?P<topup_id>[^/]+)/callback", api_topups.TopupCallbackView.as_view(), "topup-callback"),
    route(r"withdrawals/(?P<withdrawal_id>[^/]+)/cancel", api.WithdrawalCancelView.as_view(), "withdrawal-cancel"),
]
