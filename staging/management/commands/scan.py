from django.core.management.base import BaseCommand, CommandError

from staging.errors import ServiceError
from staging.selectors import store_get
from staging.services.catalogue import catalogue_scan


class Command(BaseCommand):
    help = "Index a store's archive tree into the file catalogue (ids stay stable across scans)."

    def add_arguments(self, parser):
        parser.add_argument("--store", help="Store id (default: the primary store).")
        parser.add_argument("--prefix", default="", help="Only scan below this relative path.")

    def handle(self, *args, store=None, prefix="", **options):
        try:
            target = store_get(slug=store)
            summary = catalogue_scan(store=target, prefix=prefix)
        except ServiceError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(f"store {target.slug}: {summary}")
