from django.apps import AppConfig


class DisputesConfig(AppConfig):
    """Disputes, their evidence and messages, and their resolution."""

    name = "disputes"
    verbose_name = "Disputes"

    def ready(self):
        from disputes import services  # noqa: F401  (connects the resolution's escrow step listener)
