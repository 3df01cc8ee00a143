from django.core.management.base import BaseCommand, CommandError

from offerhub.models import AuditLog
from offerhub.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key and print it once. Example: --name shop --scopes read,write"

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="A label for the key (1-100 characters).")
        parser.add_argument("--scopes", required=True, help="Comma-separated: read,write,support or *.")
        parser.add_argument("--marketplace-id", default="", help="Restrict the key to one marketplace's resources.")

    def handle(self, *args, name, scopes, marketplace_id, **options):
        scope_list = [scope.strip() for scope in scopes.split(",") if scope.strip()]
        if not scope_list:
            raise CommandError("--scopes needs at least one scope, e.g. read,write")
        if not 1 <= len(name) <= 100:
            raise CommandError("--name must be 1 to 100 characters")
        api_key, secret = api_key_create(
            name=name,
            scopes=scope_list,
            marketplace_id=marketplace_id,
            actor_type=AuditLog.ActorType.SYSTEM,
            actor_id="manage.py",
        )
        self.stdout.write(f"Created {api_key.id} ({', '.join(api_key.scopes)}). The key is shown only this once:")
        self.stdout.write(secret)
