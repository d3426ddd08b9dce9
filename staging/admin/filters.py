"""List filters that stay cheap on big tables: no dropdown built from a million rows."""

import uuid

from django.contrib import admin
from django.contrib.auth import get_user_model

from staging.models import Job
from staging.selectors_admin import job_task_names


class InputFilter(admin.SimpleListFilter):
    """A filter the staffer types into (a user name, a job id) instead of picking from a list
    that would have to be read from the whole table."""

    template = "admin/staging/input_filter.html"
    placeholder = ""

    def lookups(self, request, model_admin):
        return ()

    def has_output(self):
        return True

    def shown_value(self) -> str:
        """What the text box shows for the current value."""
        return self.value() or ""

    def caption(self) -> str:
        """A line under the box saying what the value names ("" for nothing)."""
        return ""

    def choices(self, changelist):
        yield {
            "value": self.shown_value(),
            "caption": self.caption(),
            "parameter_name": self.parameter_name,
            "placeholder": self.placeholder,
            "hidden": [(k, v) for k, v in changelist.params.items() if k != self.parameter_name],
            "clear_query_string": changelist.get_query_string(remove=[self.parameter_name]),
        }


class OwnerFilter(InputFilter):
    title = "owner"
    parameter_name = "owner"
    placeholder = "user name"

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        # The id first, then the jobs by (owner, created_at): a join on the name would leave
        # the planner scanning all jobs newest first, looking for this owner's.
        owner_id = (
            get_user_model()
            .objects.filter(username=self.value().strip())
            .values_list("pk", flat=True)
            .first()
        )
        return queryset.filter(owner_id=owner_id) if owner_id else queryset.none()


class JobFilter(InputFilter):
    """Rows of one job (sub-jobs, items, pins), named by its public id (as the job page links
    here) or its row id."""

    title = "job"
    parameter_name = "job"
    placeholder = "job id"

    def _job(self) -> Job | None:
        """The job the value names, read once per request (the box, its caption and the
        filter all need it)."""
        if not hasattr(self, "_named"):
            value = (self.value() or "").strip()
            if value.isdigit():
                lookup = {"pk": int(value)}
            else:
                try:
                    lookup = {"uuid": uuid.UUID(value)}
                except ValueError:
                    lookup = None
            jobs = Job.objects.select_related("owner")
            self._named = jobs.filter(**lookup).first() if lookup else None
        return self._named

    def shown_value(self) -> str:
        # Links made with a row number (older pages, bookmarks) still show the public id.
        job = self._job()
        return str(job.uuid) if job else (self.value() or "")

    def caption(self) -> str:
        job = self._job()
        return (
            f"{job.task} for {job.owner.get_username()}, {job.get_status_display()}" if job else ""
        )

    def queryset(self, request, queryset):
        if not (self.value() or "").strip():
            return queryset
        job = self._job()
        return queryset.filter(job_id=job.pk) if job else queryset.none()


class TaskFilter(admin.SimpleListFilter):
    title = "task"
    parameter_name = "task"

    def lookups(self, request, model_admin):
        return [(name, name) for name in job_task_names()]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(task=self.value())
        return queryset
