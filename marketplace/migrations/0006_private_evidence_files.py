"""Delivery evidence files move out of the public media directory into the private storage.

Until now they were saved under MEDIA_ROOT (`orders/<order id>/…`), which the proxy (or
`make run`) serves at /media/ to anyone holding the name. Every file under `orders/` moves
to PRIVATE_MEDIA_ROOT with the same name; a name already taken there is saved under a new
name and the milestone row follows. Rolling back moves them back. Where MEDIA_ROOT lives on
another machine than the one migrating, run `manage.py private_files_move` there.
"""

from django.core.files.storage import storages
from django.db import migrations, models

import marketplace.models
import offerhub.files

PREFIX = "orders/"


def _move(apps, source, destination):
    OrderMilestone = apps.get_model("marketplace", "OrderMilestone")
    moved = offerhub.files.private_files_move(prefix=PREFIX, source=source, destination=destination)
    for old, new in moved.items():
        if new != old:
            OrderMilestone.objects.filter(evidence_file=old).update(evidence_file=new)


def to_private(apps, schema_editor):
    _move(apps, storages["default"], offerhub.files.private_storage())


def to_public(apps, schema_editor):
    _move(apps, offerhub.files.private_storage(), storages["default"])


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0005_orders"),
    ]

    operations = [
        migrations.AlterField(
            model_name="ordermilestone",
            name="evidence_file",
            field=models.FileField(
                blank=True, storage=offerhub.files.private_storage, upload_to=marketplace.models.milestone_evidence_path
            ),
        ),
        migrations.RunPython(to_private, to_public, elidable=False),
    ]
