from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    """Ledger, balances and holds, Stellar wallets, deposits and withdrawals, top-ups."""

    name = "payments"
    verbose_name = "Payments"

    def ready(self):
        from payments import (
            payout_webhooks,  # noqa: F401  registers the Airtm payout.* processor
            topup_webhooks,  # noqa: F401  registers the Airtm payin.* processor
        )
