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

    def choices(self, changelist):
        yield {
            "value": self.value() or "",
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
    """Rows of one job (sub-jobs, items, pins), named by its public id or its row id; the job
    page links here."""

    title = "job"
    parameter_name = "job"
    placeholder = "job id"

    def queryset(self, request, queryset):
        value = (self.value() or "").strip()
        if not value:
            return queryset
        if value.isdigit():
            return queryset.filter(job_id=int(value))
        try:
            job_uuid = uuid.UUID(value)
        except ValueError:
            return queryset.none()
        job_id = Job.objects.filter(uuid=job_uuid).values_list("pk", flat=True).first()
        return queryset.filter(job_id=job_id) if job_id else queryset.none()


class TaskFilter(admin.SimpleListFilter):
    title = "task"
    parameter_name = "task"

    def lookups(self, request, model_admin):
        return [(name, name) for name in job_task_names()]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(task=self.value())
        return queryset
