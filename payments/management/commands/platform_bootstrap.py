from django.core.management.base import BaseCommand, CommandError

from payments.models import PlatformSigner
from payments.stellar import StellarError
from payments.wallets import PlatformNotReady, platform_bootstrap


class Command(BaseCommand):
    help = (
        "Create (or import) and fund the platform's Stellar account, and its escrow signers "
        "(OFFERHUB_PLATFORM_SIGNERS). Safe to run again."
    )

    def handle(self, *args, **options):
        try:
            account, created = platform_bootstrap()
        except (PlatformNotReady, StellarError) as exc:
            raise CommandError(str(exc)) from exc
        state = "created" if created else "already set up"
        self.stdout.write(self.style.SUCCESS(f"Platform account {account.public_key} {state} and funded."))
        signers = PlatformSigner.objects.count()
        self.stdout.write(self.style.SUCCESS(f"{signers} escrow signer account(s) on chain."))
