"""Idempotent demo data for `make run`: safe to run on every start, it never duplicates.

Needs the providers reachable (in embedded mode: the server running, since it serves
the sandbox); `make run` seeds once the server listens.
"""

from decimal import Decimal

from django.conf import settings
from django.core.management.base import BaseCommand

from marketplace.models import User
from payments.deposits import deposits_sync
from payments.ledger import user_accounts
from payments.models import Wallet
from payments.stellar import StellarError
from payments.wallets import PlatformNotReady, platform_bootstrap, wallet_activate, wallet_ensure

DEMO_PASSWORD = "offerhub-demo"  # noqa: S105  (public on purpose: demo data only)
DEMO_USERS = [
    {"email": "buyer@demo.offerhub.test", "display_name": "Bea Buyer", "is_staff": False, "funds": Decimal("500")},
    {"email": "seller@demo.offerhub.test", "display_name": "Sam Seller", "is_staff": False, "funds": Decimal("0")},
    {"email": "support@demo.offerhub.test", "display_name": "Sofia Support", "is_staff": True, "funds": Decimal("0")},
]


class Command(BaseCommand):
    help = "Create the demo users with their wallets and demo funds if missing; print the logins."

    def handle(self, *args, **options):
        created = 0
        users = []
        for spec in DEMO_USERS:
            user = User.objects.filter(email__iexact=spec["email"]).first()
            if user is None:
                make = User.objects.create_superuser if spec["is_staff"] else User.objects.create_user
                user = make(spec["email"], DEMO_PASSWORD, display_name=spec["display_name"])
                created += 1
            users.append((user, spec))
        self.stdout.write(self.style.SUCCESS(f"Demo users ready ({created} created)."))
        try:
            self._money(users)
        except (PlatformNotReady, StellarError) as error:
            self.stderr.write(
                f"Demo wallets and funds skipped: the payment providers are not reachable ({error}). "
                "In embedded mode start the server first (`make run` does this for you)."
            )
        self.stdout.write(f"Demo logins (password for each: {DEMO_PASSWORD}):")
        for _, spec in users:
            role = "support, backoffice at /admin/" if spec["is_staff"] else "buyer and seller"
            self.stdout.write(f"  {spec['email']:<30} {role}")

    def _money(self, users) -> None:
        from payments.balances import sandbox_mint

        platform_bootstrap()
        for user, spec in users:
            wallet = wallet_activate(wallet=wallet_ensure(user=user))
            available, _ = user_accounts(user)
            sandbox = "stellar" in settings.SANDBOX_PROVIDERS  # real networks are funded for real
            if sandbox and spec["funds"] and wallet.status == Wallet.Status.ACTIVE and not available.postings.exists():
                sandbox_mint(wallet, int(spec["funds"] * 10_000_000))
        deposits_sync()
