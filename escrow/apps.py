from django.apps import AppConfig


class EscrowConfig(AppConfig):
    """Trustless Work client, escrow records, signing, sync and the public escrow viewer."""

    name = "escrow"
    verbose_name = "Escrow"

    def ready(self):
        from escrow.runner import escrow_funding_confirm
        from payments.balances import escrow_funding_confirmers

        if escrow_funding_confirm not in escrow_funding_confirmers:
            escrow_funding_confirmers.append(escrow_funding_confirm)
