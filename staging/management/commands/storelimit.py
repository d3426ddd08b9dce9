from django.core.management.base import BaseCommand, CommandError

from staging.errors import ServiceError
from staging.services.stores import store_limit_set


class Command(BaseCommand):
    help = (
        "Set how many sub-jobs of a store workers may run at once (e.g. its tape drive count); "
        "the rest wait in the database. Applies at the next dispatch, without a restart."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug", help="The store id (storeID).")
        limit = parser.add_mutually_exclusive_group(required=True)
        limit.add_argument("--max-active", type=int, help="The limit, at least 1.")
        limit.add_argument("--unlimited", action="store_true", help="Remove the limit.")

    def handle(self, *args, **options):
        try:
            store = store_limit_set(
                slug=options["slug"],
                max_active=None if options["unlimited"] else options["max_active"],
            )
        except ServiceError as exc:
            raise CommandError(exc.detail) from exc
        limit = "no limit" if store.max_active is None else f"at most {store.max_active}"
        self.stdout.write(f"store {store.slug}: {limit} sub-jobs at once")
