"""Move delivery evidence files still under MEDIA_ROOT (`orders/…`) into the private storage.

Migration 0006 does this once where it runs; run this command on the machine that holds
MEDIA_ROOT when that is not where migrations run (or after restoring an old backup of the
media directory). Idempotent: with nothing left to move it does nothing.
"""

from django.core.files.storage import storages
from django.core.management.base import BaseCommand

from marketplace.models import OrderMilestone
from offerhub.files import private_files_move, private_storage

PREFIX = "orders/"


class Command(BaseCommand):
    help = "Move delivery evidence files from the public media directory into PRIVATE_MEDIA_ROOT."

    def handle(self, *args, **options):
        destination = private_storage()
        moved = private_files_move(prefix=PREFIX, source=storages["default"], destination=destination)
        renamed = {old: new for old, new in moved.items() if new != old}
        for old, new in renamed.items():
            OrderMilestone.objects.filter(evidence_file=old).update(evidence_file=new)
        self.stdout.write(f"Moved {len(moved)} file(s) into {destination.location} ({len(renamed)} renamed).")
