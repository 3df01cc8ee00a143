from django.apps import AppConfig


class OfferHubConfig(AppConfig):
    name = "offerhub"
    verbose_name = "Platform"

    def ready(self):
        from offerhub import subscribers  # noqa: F401  (registers event subscribers)
