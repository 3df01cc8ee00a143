from django.apps import AppConfig


class EscrowConfig(AppConfig):
    """Trustless Work client, escrow records, signing, sync and the public escrow viewer."""

    name = "escrow"
    verbose_name = "Escrow"
