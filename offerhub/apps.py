from django.apps import AppConfig


class OfferHubConfig(AppConfig):
    name = "offerhub"
    verbose_name = "Platform"

    def ready(self):
        from offerhub import files, subscribers, waits  # noqa: F401  (the system check, event subscribers, change notifications)
