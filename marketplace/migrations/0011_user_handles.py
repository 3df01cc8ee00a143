"""A handle for every member who signed up before handles existed: their name as a slug, made unique."""

from django.db import migrations
from django.utils.text import slugify

HANDLE_MAX_LENGTH = 40


def handles_fill(apps, schema_editor):
    User = apps.get_model("marketplace", "User")
    taken = set(User.objects.exclude(handle=None).values_list("handle", flat=True))
    for user in User.objects.filter(handle=None).order_by("date_joined", "pk").iterator():
        base = slugify(user.display_name)[: HANDLE_MAX_LENGTH - 5].strip("-") or "member"
        handle, n = base, 1
        while handle in taken:
            n += 1
            handle = f"{base}-{n}"
        taken.add(handle)
        User.objects.filter(pk=user.pk).update(handle=handle)


class Migration(migrations.Migration):
    dependencies = [("marketplace", "0010_profiles_reviews")]

    operations = [migrations.RunPython(handles_fill, migrations.RunPython.noop)]
