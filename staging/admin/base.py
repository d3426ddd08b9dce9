"""Shared pieces of the model admins."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from staging.admin.paginator import EstimatedCountPaginator


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that only services write: staff look, never edit, add or delete. Lists of them may
    hold millions of rows, so they are never counted in full."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    # Sorting by a column would sort the whole (filtered) table; filters narrow instead.
    sortable_by = ()
    list_per_page = 100

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def job_link(job, *, short: bool = False) -> str:
    """A link to the job's page; ``short``: the first block of its id (the whole in the
    tooltip), for narrow columns."""
    url = reverse("admin:staging_job_change", args=[job.pk])
    if short:
        return format_html(
            '<a class="job-id" href="{}" title="{}">{}…</a>', url, job.uuid, str(job.uuid)[:8]
        )
    return format_html('<a class="job-id" href="{}">{}</a>', url, job.uuid)
