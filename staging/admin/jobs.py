"""The job list and the job page: find, watch and steer jobs, fast with millions of rows."""

import json

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html

from staging.admin.actions import (
    JOB_ACTIONS,
    cancel_jobs,
    raise_priority,
    release_pins,
    retry_failed_items,
)
from staging.admin.display import (
    FAILED_STATUSES,
    duration_text,
    job_duration,
    job_progress_bar,
    status_badge,
)
from staging.admin.filters import OwnerFilter, TaskFilter
from staging.admin.paginator import EstimatedCountPaginator
from staging.models import PENDING_STATUSES, TERMINAL_STATUSES, Job, JobStatus
from staging.selectors import job_progress
from staging.selectors_admin import (
    job_failure_reasons,
    job_items_count_by_status,
    job_live_pins_count,
    job_live_pins_on_staged_count,
    job_subjobs_page,
    jobs_search,
)
from staging.selectors_dispatch import job_waiting_reason

SUBJOBS_SHOWN = 100


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "job_id",
        "task",
        "store",
        "owner_name",
        "status_badge",
        "progress",
        "created",
        "duration",
    ]
    list_display_links = ["job_id"]
    # Only orderings an index serves; sorting a million rows by owner or status would not be.
    sortable_by = ["job_id", "created"]
    # Facet counts run one COUNT per filter choice over the whole table: never offered.
    show_facets = admin.ShowFacets.NEVER
    list_filter = [
        "status",
        TaskFilter,
        "store",
        OwnerFilter,
        ("created_at", admin.DateFieldListFilter),
    ]
    list_select_related = ["store", "owner"]
    list_per_page = 50
    search_fields = ["uuid"]  # shows the search box; get_search_results does the searching
    search_help_text = "A job id, a file id, or a file path (or the start of one)."
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    actions = [cancel_jobs, retry_failed_items, release_pins, raise_priority]
    fieldsets = [
        ("Request", {"fields": ["uuid", "task", "store", "owner", "source", "idempotency_key"]}),
        # Why the job waits is at the top of the page, worked out at each view (the stored
        # ``waiting`` field says only "staging area full").
        ("Parameters", {"fields": ["parameters_json", "lifetime", "priority", "deadline_at"]}),
        # The error is shown at the top of the page, with the failed items' reasons.
        ("Outcome", {"fields": ["result_json"]}),
    ]
    readonly_fields = ["parameters_json", "result_json"]

    # --- the list ------------------------------------------------------------------------

    @admin.display(description="job id", ordering="uuid")
    def job_id(self, job):
        # The first block of the id is enough to tell jobs apart on one page; the full id is in
        # the tooltip, on the job's page, and accepted by the search box.
        return format_html(
            '<span class="job-id" title="{}">{}…</span>', job.uuid, str(job.uuid)[:8]
        )

    @admin.display(description="owner")
    def owner_name(self, job):
        # Cut short in a narrow column (admin.css); the whole name in the tooltip.
        name = job.owner.get_username()
        return format_html('<span title="{}">{}</span>', name, name)

    @admin.display(description="created", ordering="created_at")
    def created(self, job):
        return date_format(timezone.localtime(job.created_at), "Y-m-d H:i:s")

    @admin.display(description="status", ordering="status")
    def status_badge(self, job):
        return status_badge(job.status)

    @admin.display(description="progress")
    def progress(self, job):
        return job_progress_bar(job)

    @admin.display(description="duration")
    def duration(self, job):
        return job_duration(job)

    def changelist_view(self, request, extra_context=None):
        # The list needs the width more than the app menu does (it has breadcrumbs): without
        # the sidebar every column fits beside the filters from 1280 px up.
        context = {"title": "Jobs", "is_nav_sidebar_enabled": False, **(extra_context or {})}
        return super().changelist_view(request, context)

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        return jobs_search(jobs=queryset, term=search_term), False

    # --- the page: facts read-only, state moved only by the actions ------------------------

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        # Nobody edits a job in a form; "change" is the permission the actions require.
        return obj is None and super().has_change_permission(request)

    @admin.display(description="parameters")
    def parameters_json(self, job):
        return format_html('<pre class="json">{}</pre>', json.dumps(job.parameters, indent=2))

    @admin.display(description="result")
    def result_json(self, job):
        return format_html('<pre class="json">{}</pre>', json.dumps(job.result, indent=2))

    def get_urls(self):
        return [
            path(
                "<path:object_id>/act/<str:action>/",
                self.admin_site.admin_view(self.object_action_view),
                name=f"{self.opts.app_label}_{self.opts.model_name}_act",
            ),
            *super().get_urls(),
        ]

    def object_action_view(self, request, object_id, action):
        """The buttons of the job page: the list's actions applied to one job."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if action not in JOB_ACTIONS:
            raise Http404(f"no job action {action!r}")
        if not self.has_change_permission(request):
            raise PermissionDenied
        job = self.get_object(request, object_id)
        if job is None:
            raise Http404(f"no job {object_id!r}")
        JOB_ACTIONS[action](self, request, self.get_queryset(request).filter(pk=job.pk))
        return redirect(reverse("admin:staging_job_change", args=[job.pk]))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context.update(self._page_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _page_context(self, request, job: Job) -> dict:
        now = timezone.now()
        subjobs_total, subjobs = job_subjobs_page(job=job, limit=SUBJOBS_SHOWN)
        items = job_items_count_by_status(job=job)
        items_url = reverse("admin:staging_item_changelist")
        can_act = self.has_change_permission(request)
        pins = job_live_pins_count(job=job)
        pins_on_staged = job_live_pins_on_staged_count(job=job) if pins else 0
        return {
            "job": job,
            "badge": status_badge(job.status),
            "progress_bar": job_progress_bar(job),
            "progress": job_progress(job=job),
            # Why its sub-jobs are not running yet, by the dispatcher's own rules.
            "waiting_reason": job_waiting_reason(job=job),
            "timeline": [
                ("Created", job.created_at, None),
                (
                    "Started",
                    job.started_at,
                    f"after {duration_text(job.started_at - job.created_at)} in the queue"
                    if job.started_at
                    else None,
                ),
                (
                    "Finished",
                    job.finished_at,
                    f"ran {duration_text(job.finished_at - job.started_at)}"
                    if job.finished_at and job.started_at
                    else None,
                ),
            ],
            "duration": job_duration(job, now),
            "subjobs": subjobs,
            "subjobs_total": subjobs_total,
            "subjobs_url": f"{reverse('admin:staging_subjob_changelist')}?job={job.uuid}",
            "items_by_status": [
                (
                    JobStatus(status).label,
                    status,
                    count,
                    f"{items_url}?job={job.uuid}&status__exact={status}",
                )
                for status, count in items.items()
            ],
            "items_url": f"{items_url}?job={job.uuid}",
            "failure_reasons": job_failure_reasons(job=job),
            "failed_items_url": f"{items_url}?job={job.uuid}&status__exact={JobStatus.FAILED}",
            # A job pins every file when created: count apart the pins on files it never staged
            # (cancelled or failed ones), which hold no copy of this job's making.
            "pins_on_staged": pins_on_staged,
            "pins_not_staged": pins - pins_on_staged,
            "job_over": job.status in TERMINAL_STATUSES,
            "pins_url": f"{reverse('admin:staging_pin_changelist')}?job={job.uuid}",
            "can_see_task_results": request.user.has_perm("django_celery_results.view_taskresult"),
            "job_actions": [
                (name, label)
                for name, label, possible in [
                    (
                        "cancel",
                        "Cancel job",
                        job.status in PENDING_STATUSES,
                    ),
                    ("retry", "Retry failed items", job.status in FAILED_STATUSES),
                    ("release", "Release pins", pins > 0),
                ]
                if can_act and possible
            ],
        }
