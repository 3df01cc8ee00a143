from django.apps import AppConfig


class OfferHubConfig(AppConfig):
    name = "offerhub"
    verbose_name = "Platform"

    def ready(self):
        from offerhub import files, subscribers  # noqa: F401  (registers the system check and event subscribers)
