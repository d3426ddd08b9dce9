from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from staging.services.retention import jobs_purge


class Command(BaseCommand):
    help = (
        "Delete finished jobs older than the retention age, with their items, sub-jobs, results "
        "and TaskResult rows, in batches. Jobs still pinning staged copies are kept."
    )

    def add_arguments(self, parser):
        default_days = settings.STAGING["RETENTION"].days
        parser.add_argument(
            "--older-than-days",
            type=int,
            default=default_days,
            help=f"Age after a job ended (default {default_days}, STAGING_RETENTION_DAYS).",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=settings.STAGING["RETENTION_BATCH"],
            help="Jobs deleted per transaction.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Only count what would go.")

    def handle(self, *args, older_than_days, batch_size, dry_run, **options):
        if older_than_days < 1:
            raise CommandError("--older-than-days must be at least 1")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        summary = jobs_purge(
            older_than=timedelta(days=older_than_days), batch_size=batch_size, dry_run=dry_run
        )
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(
            f"{verb} {summary.jobs} jobs ended more than {older_than_days} days ago "
            f"({summary.subjobs} sub-jobs, {summary.items} items, "
            f"{summary.task_results} task results)"
        )
