import logging

from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate

logger = logging.getLogger(__name__)


def support_roles_sync(sender, using="default", **kwargs) -> None:
    """Re-apply backoffice/roles.py after every migrate (and every test flush): a permission a
    later migration adds reaches its group without a new data migration.

    post_migrate is sent once per app that has models (this one has none), each time after
    auth's create_permissions for that app: acting on the last app's signal sees every permission.
    """
    with_models = [app_config for app_config in apps.get_app_configs() if app_config.models_module is not None]
    if sender is not with_models[-1]:
        return
    from django.contrib.auth.models import Group, Permission

    from backoffice.roles import roles_apply

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
        post_migrate.connect(support_roles_sync, dispatch_uid="backoffice.support_roles_sync")
