from django.apps import AppConfig


class BackofficeConfig(AppConfig):
    """The support staff's backoffice: the Django admin, titled and organised for support."""

    name = "backoffice"
    verbose_name = "Backoffice"

    def ready(self):
        from django.contrib import admin

        admin.site.site_header = "OfferHub backoffice"
        admin.site.site_title = "OfferHub backoffice"
        admin.site.index_title = "Support"
