import logging

from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate

logger = logging.getLogger(__name__)


def support_roles_sync(sender, using="default", **kwargs) -> None:
    """Re-apply backoffice/roles.py after every migrate (and every test flush): a permission a
    later migration adds reaches its group without a new data migration."""
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Group, Permission

    from backoffice.roles import roles_apply

    # Apps after this one in INSTALLED_APPS get their permissions after this receiver: make them now.
    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using)
    installed = {app_config.label for app_config in apps.get_app_configs()}
    missing = roles_apply(Group, Permission, installed_apps=installed, using=using)
    if missing:
        logger.warning("Support roles name permissions that do not exist: %s", ", ".join(missing))


class BackofficeConfig(AppConfig):
    """The support staff's backoffice: the Django admin, titled and organised for support."""

    name = "backoffice"
    verbose_name = "Backoffice"

    def ready(self):
        from django.contrib import admin

        admin.site.site_header = "OfferHub backoffice"
        admin.site.site_title = "OfferHub backoffice"
        admin.site.index_title = "Support"
        post_migrate.connect(support_roles_sync, sender=self, dispatch_uid="backoffice.support_roles_sync")
