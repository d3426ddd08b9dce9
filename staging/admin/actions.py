"""Job actions of the admin (on the list and on a job's page). Each goes through the services,
reports what it did with ``message_user``, and says plainly which jobs it refused and why."""

from django.contrib import admin, messages

from staging.errors import ConflictError, listed_names
from staging.models import PENDING_STATUSES, JobStatus
from staging.services.dispatch import jobs_prioritize
from staging.services.job_requests import job_cancel_requested
from staging.services.jobs import job_retry
from staging.services.releases import job_release

# "Select all" on a list of a million jobs must not start a million cancels in one request.
MAX_JOBS_PER_ACTION = 500


def _ids(jobs, limit: int = 5) -> str:
    return listed_names([str(job.uuid) for job in jobs[:limit]], limit, count=len(jobs))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _selected(modeladmin, request, queryset):
    jobs = list(queryset.select_related(None).order_by("pk")[: MAX_JOBS_PER_ACTION + 1])
    if len(jobs) > MAX_JOBS_PER_ACTION:
        modeladmin.message_user(
            request,
            f"Nothing done: at most {MAX_JOBS_PER_ACTION} jobs at a time; narrow the list "
            "with the filters first.",
            messages.ERROR,
        )
        return None
    return jobs


def _report_refusals(modeladmin, request, what: str, refusals: list[str]) -> None:
    if refusals:
        shown = "; ".join(refusals[:5]) + ("; …" if len(refusals) > 5 else "")
        modeladmin.message_user(
            request,
            f"Could not {what} {_plural(len(refusals), 'job')}: {shown}",
            messages.ERROR,
        )


@admin.action(description="Cancel selected jobs", permissions=["change"])
def cancel_jobs(modeladmin, request, queryset):
    jobs = _selected(modeladmin, request, queryset)
    if jobs is None:
        return
    stopped, stopping, already, refusals = [], [], [], []
    for job in jobs:
        before = job.status
        try:
            job = job_cancel_requested(job=job, by=request.user)
        except ConflictError as exc:
            refusals.append(exc.detail)
            continue
        if before in (JobStatus.CANCELLING, JobStatus.CANCELLED):
            already.append(job)
            continue
        modeladmin.log_change(request, job, "Cancelled from the admin.")
        (stopped if job.status == JobStatus.CANCELLED else stopping).append(job)
    if stopped:
        modeladmin.message_user(
            request, f"Cancelled {_plural(len(stopped), 'job')}: {_ids(stopped)}.", messages.SUCCESS
        )
    if stopping:
        modeladmin.message_user(
            request,
            f"Cancelling {_plural(len(stopping), 'job')}: {_ids(stopping)}. Queued work was "
            "withdrawn; running sub-jobs stop after their current file.",
            messages.SUCCESS,
        )
    if already:
        modeladmin.message_user(
            request,
            f"Already cancelled or cancelling: {_ids(already)}; nothing to do.",
            messages.INFO,
        )
    _report_refusals(modeladmin, request, "cancel", refusals)


@admin.action(description="Retry failed items of selected jobs", permissions=["change"])
def retry_failed_items(modeladmin, request, queryset):
    jobs = _selected(modeladmin, request, queryset)
    if jobs is None:
        return
    retried, items, refusals = [], 0, []
    for job in jobs:
        failed_items = job.files_failed
        try:
            job = job_retry(job=job)
        except ConflictError as exc:
            refusals.append(exc.detail)
            continue
        modeladmin.log_change(request, job, "Failed items retried from the admin.")
        retried.append(job)
        items += failed_items
    if retried:
        modeladmin.message_user(
            request,
            f"Retrying the failed items of {_plural(len(retried), 'job')} "
            f"({_plural(items, 'item')}) as new sub-jobs: {_ids(retried)}.",
            messages.SUCCESS,
        )
    _report_refusals(modeladmin, request, "retry", refusals)


@admin.action(description="Release pins of selected jobs", permissions=["change"])
def release_pins(modeladmin, request, queryset):
    jobs = _selected(modeladmin, request, queryset)
    if jobs is None:
        return
    released, pins, refusals = [], 0, []
    for job in jobs:
        count = job_release(job=job)
        if not count:
            refusals.append(f"job {job.uuid} holds no pins")
            continue
        modeladmin.log_change(request, job, f"{_plural(count, 'pin')} released from the admin.")
        released.append(job)
        pins += count
    if released:
        modeladmin.message_user(
            request,
            f"Released {_plural(pins, 'pin')} of {_plural(len(released), 'job')}: "
            f"{_ids(released)}. The sweeper deletes the staged copies no other job pins (those "
            "of a job still running, once it ends).",
            messages.SUCCESS,
        )
    _report_refusals(modeladmin, request, "release the pins of", refusals)


@admin.action(description="Raise selected jobs to the highest priority (5)", permissions=["change"])
def raise_priority(modeladmin, request, queryset):
    jobs = _selected(modeladmin, request, queryset)
    if jobs is None:
        return
    waiting = [job for job in jobs if job.status in PENDING_STATUSES]
    changed = jobs_prioritize(job_ids=[job.pk for job in waiting], priority=5)
    for job in waiting:
        modeladmin.log_change(request, job, "Priority raised to 5 from the admin.")
    modeladmin.message_user(
        request,
        f"{_plural(changed, 'job')} raised to priority 5; their waiting sub-jobs go first "
        "from the next dispatch on."
        + (
            f" {_plural(len(jobs) - len(waiting), 'job')} already ended: left as is."
            if len(jobs) > len(waiting)
            else ""
        ),
        messages.SUCCESS,
    )


JOB_ACTIONS = {
    "cancel": cancel_jobs,
    "retry": retry_failed_items,
    "release": release_pins,
}
