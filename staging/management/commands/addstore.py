import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from staging.errors import ServiceError
from staging.models import StoreKind
from staging.services.deadlines import deadline_parse
from staging.services.stores import store_create


class Command(BaseCommand):
    help = (
        "Add a store (a storage provider, the storeID of the task APIs) with its archive and "
        "staging roots. The first store, or one given --primary, is the primary store."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug", help="The store id (storeID).")
        parser.add_argument("--archive-root", required=True, help="Absolute path files come from.")
        parser.add_argument("--staging-root", required=True, help="Absolute path copies go to.")
        parser.add_argument(
            "--kind",
            default=StoreKind.POSIX,
            choices=StoreKind.values,
            help="posix (default), or posix-tape: files on tape, restored with restore-content.",
        )
        parser.add_argument("--primary", action="store_true", help="Make it the primary store.")
        parser.add_argument(
            "--hard-link",
            action="store_true",
            help="Stage by hard link when both roots share a filesystem.",
        )
        parser.add_argument("--description", default="")
        parser.add_argument(
            "--latency-ms",
            type=int,
            default=0,
            help="Simulated delay per file, to imitate a tape library (demos, benchmarks).",
        )
        parser.add_argument(
            "--max-active",
            type=int,
            default=None,
            help="Sub-jobs of this store workers may run at once (e.g. the tape drives); the "
            "rest wait in the database. Default: no limit. Change it later with storelimit.",
        )
        parser.add_argument(
            "--deadline",
            default=None,
            help="How long a request that names no deadline may take (the DTS never names "
            "one): seconds (7200) or an ISO 8601 duration (PT2H, P1D). Default: none. Change "
            "it later with storelimit.",
        )
        parser.add_argument(
            "--credit",
            default=None,
            help="KBase credit metadata of every file, as JSON or @file.json: titles, "
            "contributors, dates, version, license, repository, ... (docs/dts.md).",
        )
        parser.add_argument(
            "--sources",
            default=None,
            help='Frictionless sources of every file, as JSON or @file.json: [{"title", "path", '
            '"email"}].',
        )

    def handle(self, *args, **options):
        credit = _json_option(options["credit"], "--credit")
        sources = _json_option(options["sources"], "--sources")
        try:
            deadline = None
            if options["deadline"] is not None:
                deadline = deadline_parse(options["deadline"], field="--deadline")
            store = store_create(
                slug=options["slug"],
                archive_root=options["archive_root"],
                staging_root=options["staging_root"],
                kind=options["kind"],
                primary=options["primary"],
                hard_link=options["hard_link"],
                description=options["description"],
                simulated_latency_ms=options["latency_ms"],
                credit=credit,
                sources=sources,
                max_active=options["max_active"],
                default_deadline=deadline,
            )
        except ServiceError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(
            f"store {store.slug} ({store.kind}{', primary' if store.is_primary else ''}): "
            f"archive {store.archive_root}, staging {store.staging_root}"
        )


def _json_option(raw: str | None, option: str):
    """JSON given inline, or read from the file named after an @."""
    if raw is None:
        return None
    try:
        text = Path(raw[1:]).read_text() if raw.startswith("@") else raw
        return json.loads(text)
    except OSError as exc:
        raise CommandError(f"{option}: cannot read {raw[1:]}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise CommandError(f"{option} is not valid JSON: {exc}") from exc
