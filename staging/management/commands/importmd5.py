from django.core.management.base import BaseCommand

from staging.management.lines_import import lines_import, unknown_paths_write
from staging.services.catalogue import catalogue_md5_import


class Command(BaseCommand):
    help = (
        "Record MD5s the archive already knows, from md5sum's output (<hex>  <path relative to "
        "the archive root>, one a line), on the store's catalogue entries. For posix-tape "
        "stores, whose files a scan never reads. Scan first: unknown paths are only counted."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="md5sum output, or - to read it from standard input")
        parser.add_argument("--store", help="Store id (default: the primary store).")

    def handle(self, *args, file, store=None, **options):
        target, summary = lines_import(catalogue_md5_import, store=store, file=file)
        self.stdout.write(
            f"store {target.slug}: {summary.recorded} MD5s recorded, "
            f"{len(summary.unknown_paths)} paths not in the catalogue, "
            f"{len(summary.malformed_lines)} lines not in md5sum's format"
        )
        unknown_paths_write(self, summary.unknown_paths)
        if summary.malformed_lines:
            shown = ", ".join(str(n) for n in summary.malformed_lines[:20])
            self.stderr.write(f"lines not in md5sum's format: {shown}")
