from django.core.management.base import BaseCommand, CommandError

from staging.api.fields import iso_duration_text
from staging.errors import ServiceError
from staging.services.deadlines import deadline_parse
from staging.services.stores import store_limit_set


class Command(BaseCommand):
    help = (
        "Set how many sub-jobs of a store workers may run at once (e.g. its tape drive count) "
        "and how much free space its staging area keeps; the rest wait in the database. "
        "Applies at the next dispatch, without a restart."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug", help="The store id (storeID).")
        limit = parser.add_mutually_exclusive_group()
        limit.add_argument("--max-active", type=int, help="The limit, at least 1.")
        limit.add_argument("--unlimited", action="store_true", help="Remove the limit.")
        parser.add_argument(
            "--free-space",
            nargs=2,
            metavar=("LOW", "HIGH"),
            help="Pause dispatch below LOW free space, resume at HIGH: bytes (50GB) or a share "
            '(10%%); "" "" removes them.',
        )

        deadline = parser.add_mutually_exclusive_group()
        deadline.add_argument(
            "--deadline",
            help="How long a request of this store that names no deadline may take: seconds "
            "(7200) or an ISO 8601 duration (PT2H, P1D); files not on disk by then fail.",
        )
        deadline.add_argument(
            "--no-deadline", action="store_true", help="Remove the default deadline."
        )

    def handle(self, *args, **options):
        changes = {}
        if options["no_deadline"]:
            changes["default_deadline"] = None
        elif options["deadline"] is not None:
            changes["default_deadline"] = _deadline_option(options["deadline"])
        if options["unlimited"] or options["max_active"] is not None:
            changes["max_active"] = None if options["unlimited"] else options["max_active"]
        if options["free_space"] is not None:
            changes["free_space"] = tuple(options["free_space"])
        if not changes:
            raise CommandError(
                "give --max-active N, --unlimited, --free-space LOW HIGH, --deadline D or "
                "--no-deadline"
            )
        try:
            store = store_limit_set(slug=options["slug"], **changes)
        except ServiceError as exc:
            raise CommandError(exc.detail) from exc
        limit = "no limit" if store.max_active is None else f"at most {store.max_active}"
        space = (
            f"; dispatch paused below {store.free_space_low} free, resumed at "
            f"{store.free_space_high or store.free_space_low}"
            if store.free_space_low
            else ""
        )
        deadline = (
            f"; requests give up after {iso_duration_text(store.default_deadline)} unless they "
            "say otherwise"
            if store.default_deadline
            else ""
        )
        self.stdout.write(f"store {store.slug}: {limit} sub-jobs at once{space}{deadline}")


def _deadline_option(raw: str):
    try:
        return deadline_parse(raw, field="--deadline")
    except ServiceError as exc:
        raise CommandError(exc.detail) from exc
