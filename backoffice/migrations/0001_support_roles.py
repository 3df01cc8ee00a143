"""The support staff's groups (backoffice/roles.py): Support agent and Support lead.

Permissions are normally created by post_migrate, after every migration has run: on a fresh
database they do not exist yet here, so they are created first, for every app.
"""

from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations

from backoffice.roles import ROLES, roles_apply


def support_roles_create(apps, schema_editor):
    using = schema_editor.connection.alias
    for app_config in apps.get_app_configs():
        # Historical app configs have no models module, which create_permissions takes for "no models".
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, using=using, apps=apps)
        app_config.models_module = None
    installed = {app_config.label for app_config in apps.get_app_configs()}
    roles_apply(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"), installed_apps=installed, using=using)


def support_roles_delete(apps, schema_editor):
    apps.get_model("auth", "Group").objects.using(schema_editor.connection.alias).filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("disputes", "0002_case_thread_evidence_deadline"),
        ("marketplace", "0008_order_manual_settlement_permission"),
        ("payments", "0006_hold_owner"),
        ("escrow", "0002_step_retry_backoff"),
        ("offerhub", "0002_auditlog_append_only_trigger"),
    ]
    if "sandbox.apps.SandboxConfig" in settings.INSTALLED_APPS:
        dependencies.append(("sandbox", "0002_escrow_engine"))

    operations = [migrations.RunPython(support_roles_create, support_roles_delete)]
