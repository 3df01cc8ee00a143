from django.db import migrations


def orders_own_their_holds(apps, schema_editor):
    """Holds whose reference is an order's id belong to the order (payments.Hold.Owner.ORDER)."""
    Hold = apps.get_model("payments", "Hold")
    Order = apps.get_model("marketplace", "Order")
    Hold.objects.filter(reference__in=Order.objects.values("public_id")).update(owner="order")


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0006_private_evidence_files"),
        ("payments", "0006_hold_owner"),
    ]

    operations = [
        migrations.RunPython(orders_own_their_holds, migrations.RunPython.noop),
    ]
