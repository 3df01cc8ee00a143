from django.apps import AppConfig


class DisputesConfig(AppConfig):
    """Disputes, their evidence and messages, and their resolution."""

    name = "disputes"
    verbose_name = "Disputes"
