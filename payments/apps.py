from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    """Ledger, balances and holds, Stellar wallets, deposits and withdrawals."""

    name = "payments"
    verbose_name = "Payments"
