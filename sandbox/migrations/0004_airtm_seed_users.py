"""A few sandbox Airtm users, one for each thing a payout can meet (docs/sandbox.md)."""

from django.db import migrations

SEED = [
    # email, first, last, country, status, verified, payout outcome, id
    ("ana@airtm.sandbox", "Ana", "Pay", "AR", "active", True, "complete", "8f1d2a60-5c1e-4d3e-9a57-0a7c2b1e0001"),
    ("ben@airtm.sandbox", "Ben", "Unverified", "MX", "active", False, "complete", "8f1d2a60-5c1e-4d3e-9a57-0a7c2b1e0002"),
    ("carla@airtm.sandbox", "Carla", "Inactive", "CO", "inactive", True, "complete", "8f1d2a60-5c1e-4d3e-9a57-0a7c2b1e0003"),
    ("fail@airtm.sandbox", "Fay", "Failing", "VE", "active", True, "fail", "8f1d2a60-5c1e-4d3e-9a57-0a7c2b1e0004"),
    ("action@airtm.sandbox", "Alex", "Action", "PE", "active", True, "user_action", "8f1d2a60-5c1e-4d3e-9a57-0a7c2b1e0005"),
]


def seed(apps, schema_editor):
    user = apps.get_model("sandbox", "SandboxAirtmUser")
    for email, first, last, country, status, verified, outcome, airtm_id in SEED:
        user.objects.get_or_create(
            email=email,
            defaults={
                "airtm_id": airtm_id,
                "first_name": first,
                "last_name": last,
                "country": country,
                "status": status,
                "is_verified": verified,
                "payout_outcome": outcome,
            },
        )


def unseed(apps, schema_editor):
    apps.get_model("sandbox", "SandboxAirtmUser").objects.filter(email__in=[row[0] for row in SEED]).delete()


class Migration(migrations.Migration):
    dependencies = [("sandbox", "0003_airtm")]
    operations = [migrations.RunPython(seed, unseed)]
