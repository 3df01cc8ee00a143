"""Idempotent demo data for `make run`: safe to run on every start, it never duplicates."""

from django.core.management.base import BaseCommand
from django.db import transaction

from marketplace.models import User

DEMO_PASSWORD = "offerhub-demo"  # noqa: S105  (public on purpose: demo data only)
DEMO_USERS = [
    {"email": "buyer@demo.offerhub.test", "display_name": "Bea Buyer", "is_staff": False},
    {"email": "seller@demo.offerhub.test", "display_name": "Sam Seller", "is_staff": False},
    {"email": "support@demo.offerhub.test", "display_name": "Sofia Support", "is_staff": True},
]


class Command(BaseCommand):
    help = "Create the demo users (and, as features land, their demo data) if missing; print the logins."

    @transaction.atomic
    def handle(self, *args, **options):
        created = 0
        for spec in DEMO_USERS:
            if User.objects.filter(email__iexact=spec["email"]).exists():
                continue
            if spec["is_staff"]:
                User.objects.create_superuser(spec["email"], DEMO_PASSWORD, display_name=spec["display_name"])
            else:
                User.objects.create_user(spec["email"], DEMO_PASSWORD, display_name=spec["display_name"])
            created += 1
        self.stdout.write(self.style.SUCCESS(f"Demo data ready ({created} user(s) created)."))
        self.stdout.write(f"Demo logins (password for each: {DEMO_PASSWORD}):")
        for spec in DEMO_USERS:
            role = "support, backoffice at /admin/" if spec["is_staff"] else "buyer and seller"
            self.stdout.write(f"  {spec['email']:<30} {role}")
