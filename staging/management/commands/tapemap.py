from django.core.management.base import BaseCommand

from staging.management.lines_import import lines_import, unknown_paths_write
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
        # newline="": the csv module reads the line ends itself.
        target, summary = lines_import(tape_map_import, store=store, file=file, newline="")
        self.stdout.write(
            f"store {target.slug}: {summary.recorded} tape locations recorded, "
            f"{len(summary.unknown_paths)} paths not in the catalogue, "
            f"{len(summary.bad_lines)} bad lines"
        )
        unknown_paths_write(self, summary.unknown_paths)
        for problem in summary.bad_lines[:20]:
            self.stderr.write(problem)
