"""Airtm accounts for the demo members (marketplace seed_demo), so that `make run` can link
Airtm and add funds with no configuration."""

from django.db import migrations

DEMO = [
    ("buyer@demo.offerhub.test", "Bea", "Buyer", "8f1d2a60-5c1e-4d3e-9a57-0a7c2b1e0101"),
    ("seller@demo.offerhub.test", "Sam", "Seller", "8f1d2a60-5c1e-4d3e-9a57-0a7c2b1e0102"),
]


def seed(apps, schema_editor):
    user = apps.get_model("sandbox", "SandboxAirtmUser")
    for email, first, last, airtm_id in DEMO:
        user.objects.get_or_create(
            email=email,
            defaults={"airtm_id": airtm_id, "first_name": first, "last_name": last, "country": "US"},
        )


def unseed(apps, schema_editor):
    apps.get_model("sandbox", "SandboxAirtmUser").objects.filter(email__in=[row[0] for row in DEMO]).delete()


class Migration(migrations.Migration):
    dependencies = [("sandbox", "0004_airtm_seed_users")]
    operations = [migrations.RunPython(seed, unseed)]
