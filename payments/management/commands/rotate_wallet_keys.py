from django.core.management.base import BaseCommand
from django.db import transaction

from payments.crypto import current_key_version, secret_rotate
from payments.models import PlatformAccount, PlatformSigner, Wallet


class Command(BaseCommand):
    help = (
        "Re-encrypt every wallet secret with the newest key of OFFERHUB_WALLET_KEYS. "
        "Rotation: prepend a new key, run this, then remove the old key."
    )

    def handle(self, *args, **options):
        newest = current_key_version()
        rotated = 0
        for model in (PlatformAccount, PlatformSigner, Wallet):
            for pk in model.objects.exclude(key_version=newest).values_list("pk", flat=True).iterator():
                with transaction.atomic():
                    holder = model.objects.select_for_update().get(pk=pk)
                    holder.encrypted_secret, holder.key_version = secret_rotate(holder.encrypted_secret)
                    holder.save(update_fields=["encrypted_secret", "key_version"])
                rotated += 1
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {rotated} secret(s) with key {newest}."))
