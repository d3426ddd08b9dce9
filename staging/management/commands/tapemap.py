import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from staging.errors import ServiceError
from staging.selectors import store_get
from staging.tape_maps import tape_map_import


class Command(BaseCommand):
    help = (
        "Tape maps: where each file of a posix-tape store is on tape, for the recall scheduler. "
        "`tapemap import STORE FILE` reads CSV lines path,vid,position (path relative to the "
        "archive root; - reads standard input). Scan first: unknown paths are only counted."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["import"])
        parser.add_argument("store", help="Store id.")
        parser.add_argument("file", help="CSV path,vid,position, or - for standard input")

    def handle(self, *args, action, store, file, **options):
        try:
            target = store_get(slug=store)
            if file == "-":
                summary = tape_map_import(store=target, lines=sys.stdin)
            else:
                with Path(file).open(encoding="utf-8", errors="surrogateescape", newline="") as f:
                    summary = tape_map_import(store=target, lines=f)
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from exc
        except ServiceError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(
            f"store {target.slug}: {summary.recorded} tape locations recorded, "
            f"{len(summary.unknown_paths)} paths not in the catalogue, "
            f"{len(summary.bad_lines)} bad lines"
        )
        if summary.unknown_paths:
            self.stderr.write("not in the catalogue: " + ", ".join(summary.unknown_paths[:20]))
        for problem in summary.bad_lines[:20]:
            self.stderr.write(problem)
