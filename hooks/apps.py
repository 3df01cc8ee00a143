from django.apps import AppConfig


class HooksConfig(AppConfig):
    name = "hooks"
    verbose_name = "Outgoing webhooks"

    def ready(self):
        from hooks import subscribers  # noqa: F401  (registers the delivery subscriber)
