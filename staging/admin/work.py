"""Sub-jobs, items and pins: read-only lists reached from a job's page, filtered by that job."""

import uuid

from django.contrib import admin
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html

from staging.admin.base import ReadOnlyAdmin, job_link
from staging.admin.display import progress_bar, status_badge, worker_host
from staging.admin.filters import JobFilter
from staging.models import Item, Pin, SubJob
from staging.selectors import item_times
from staging.selectors_admin import items_of_file


@admin.register(SubJob)
class SubJobAdmin(ReadOnlyAdmin):
    list_display = [
        "sequence",
        "job_id_link",
        "status_badge",
        "host",
        "attempts",
        "lease_expires_at",
        "progress",
        "celery_task_id",
    ]
    list_filter = [JobFilter, "status"]
    list_select_related = ["job"]
    # By the raw column: ordering by "job" would sort by the job's own ordering, through a join.
    ordering = ["-job_id", "sequence"]

    @admin.display(description="job")
    def job_id_link(self, subjob):
        return job_link(subjob.job)

    @admin.display(description="status", ordering="status")
    def status_badge(self, subjob):
        return status_badge(subjob.status)

    @admin.display(description="worker host", ordering="worker")
    def host(self, subjob):
        return worker_host(subjob.worker) or "—"

    @admin.display(description="progress")
    def progress(self, subjob):
        return progress_bar(
            files_done=subjob.files_done,
            files_failed=0,
            files_total=subjob.files_total,
            bytes_done=subjob.bytes_done,
            bytes_total=subjob.bytes_total,
        )


def _file_id_or_path(queryset, term: str):
    """Search by exact file id, else by path prefix: both served by the path index."""
    term = term.strip()
    if not term:
        return queryset
    try:
        file_id = uuid.UUID(term).hex
    except ValueError:
        return queryset.filter(path__startswith=term)
    return queryset.filter(items_of_file(file_id))


def _moment(value) -> str:
    """A time in two short lines (date, then time of day), so five of them fit beside the
    other columns at laptop widths."""
    if not value:
        return "—"
    local = timezone.localtime(value)
    return format_html(
        '<span class="moment" title="{}">{}<br>{}</span>',
        local.isoformat(),
        date_format(local, "Y-m-d"),
        date_format(local, "H:i:s"),
    )


@admin.register(Item)
class ItemAdmin(ReadOnlyAdmin):
    list_display = [
        "path",
        "job_id_link",
        "status_badge",
        "copied",
        "error",
        "queued",
        "started",
        "finished",
        "pinned_until_shown",
        "released",
    ]
    list_filter = [JobFilter, "status"]
    list_select_related = ["job", "subjob"]
    ordering = ["-job_id", "id"]
    search_fields = ["path"]
    search_help_text = "A file id, or a path (or the start of one)."
    fields = [
        "path",
        "job",
        "file",
        "tape_location",
        "subjob",
        "status",
        "size",
        "bytes_done",
        "attempts",
        "error",
        "result",
        "queued",
        "started",
        "finished",
        "pinned_until_shown",
        "released",
    ]
    readonly_fields = [
        "queued",
        "started",
        "finished",
        "pinned_until_shown",
        "released",
        "tape_location",
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(**item_times())

    @admin.display(description="on tape")
    def tape_location(self, item):
        file = item.file
        if file is None or not file.tape_vid:
            return "—"
        position = "" if file.tape_position is None else f" at position {file.tape_position}"
        return f"{file.tape_vid}{position}"

    @admin.display(description="job")
    def job_id_link(self, item):
        # The first block of the id tells jobs apart (as on the job list); all of it on hover.
        url = reverse("admin:staging_job_change", args=[item.job_id])
        return format_html(
            '<a class="job-id" href="{}" title="{}">{}…</a>',
            url,
            item.job.uuid,
            str(item.job.uuid)[:8],
        )

    def changelist_view(self, request, extra_context=None):
        # Ten columns: without the app menu they fit beside the filters from 1280 px up.
        context = {"is_nav_sidebar_enabled": False, **(extra_context or {})}
        return super().changelist_view(request, context)

    @admin.display(description="copied")
    def copied(self, item):
        # Bytes done and size in one column (both in full on the item's page).
        if item.bytes_done == item.size:
            return filesizeformat(item.size)
        return f"{filesizeformat(item.bytes_done)} of {filesizeformat(item.size)}"

    @admin.display(description="queued")
    def queued(self, item):
        return _moment(item.queued_at)

    @admin.display(description="started")
    def started(self, item):
        return _moment(item.started_at)

    @admin.display(description="finished")
    def finished(self, item):
        return _moment(item.finished_at)

    @admin.display(description="pinned until")
    def pinned_until_shown(self, item):
        return _moment(item.pinned_until)

    @admin.display(description="released")
    def released(self, item):
        return _moment(item.released_at)

    @admin.display(description="status", ordering="status")
    def status_badge(self, item):
        return status_badge(item.status)

    def get_search_results(self, request, queryset, search_term):
        return _file_id_or_path(queryset, search_term), False


@admin.register(Pin)
class PinAdmin(ReadOnlyAdmin):
    list_display = [
        "path",
        "store",
        "job_id_link",
        "expires_at",
        "released_at",
        "mismatch_found_at",
    ]
    list_filter = [JobFilter, "store"]
    list_select_related = ["job", "store"]
    search_fields = ["path"]
    search_help_text = "A path (or the start of one)."

    @admin.display(description="job")
    def job_id_link(self, pin):
        return job_link(pin.job)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        return (queryset.filter(path__startswith=term) if term else queryset), False
