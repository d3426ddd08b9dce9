import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from staging.errors import ServiceError
from staging.models import StoreKind
from staging.services.deadlines import deadline_parse
from staging.services.recall import library_configure, library_settings_check
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
        tape = parser.add_argument_group(
            "simulated tape library (posix-tape stores; docs/tape.md#the-recall-scheduler)"
        )
        tape.add_argument(
            "--tape-drives",
            type=int,
            default=None,
            help="Give the store a simulated tape library with this many drives (replaces "
            "--latency-ms) and the recall scheduler.",
        )
        tape.add_argument("--tape-mount-seconds", type=float, default=None)
        tape.add_argument("--tape-unmount-seconds", type=float, default=None)
        tape.add_argument(
            "--tape-locate-seconds", type=float, default=None, help="Seconds per position."
        )
        tape.add_argument("--tape-read-mbps", type=float, default=None, help="Read MB/s.")
        tape.add_argument(
            "--recall-min-files",
            type=int,
            default=None,
            help="Mount a cartridge once this many of its files wait (default 1).",
        )
        tape.add_argument(
            "--recall-min-bytes", type=int, default=None, help="… or this many bytes."
        )
        tape.add_argument(
            "--recall-max-wait",
            default=None,
            help="… or once its oldest file waited this long: seconds or ISO 8601 (PT5M).",
        )
        tape.add_argument(
            "--no-recall-scheduler",
            action="store_true",
            help="Keep the library but dispatch in request order.",
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
            library = _library_options(options)
            if library is not None:
                library_settings_check(kind=options["kind"], **library)
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
            if library is not None:
                library_configure(store=store, **library)
        except ServiceError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(
            f"store {store.slug} ({store.kind}{', primary' if store.is_primary else ''}): "
            f"archive {store.archive_root}, staging {store.staging_root}"
        )


def _library_options(options) -> dict | None:
    """The library's settings given, or None when no --tape-drives was."""
    if options["tape_drives"] is None:
        return None
    max_wait = options["recall_max_wait"]
    return {
        "drives": options["tape_drives"],
        "mount_seconds": options["tape_mount_seconds"],
        "unmount_seconds": options["tape_unmount_seconds"],
        "locate_seconds_per_position": options["tape_locate_seconds"],
        "read_mb_per_second": options["tape_read_mbps"],
        "min_files": options["recall_min_files"],
        "min_bytes": options["recall_min_bytes"],
        "max_wait": None
        if max_wait is None
        else deadline_parse(max_wait, field="--recall-max-wait"),
        "scheduler": not options["no_recall_scheduler"],
    }


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
