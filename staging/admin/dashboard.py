"""The staff dashboard: what is running, waiting, stuck and failing, at one glance."""

from datetime import timedelta
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from staging.admin.charts import Segment, nice_ceiling_bytes, stacked_bar_chart
from staging.admin.display import job_duration, status_badge, status_class, worker_host
from staging.models import JobStatus
from staging.selectors_dashboard import (
    FAILED_STATUSES,
    activity_per_hour,
    broker_overview,
    failure_reasons_by_job,
    job_oldest,
    jobs_count_by_status,
    jobs_failed_recently,
    subjobs_lease_expired,
    subjobs_running_by_node,
)
from staging.selectors_dispatch import WaitReason, dispatch_overview
from staging.selectors_tape import tape_overview

# A dead broker costs the page at most about this long per step (connect, queues, ping).
BROKER_TIMEOUT_SECONDS = 1.0

JOB_OUTCOMES = [
    (JobStatus.FINISHED, "finished"),
    (JobStatus.PARTIALLY_FAILED, "partially failed"),
    (JobStatus.FAILED, "failed"),
    (JobStatus.CANCELLED, "cancelled"),
]


# Why sub-jobs wait, as the dashboard says it (staging.selectors_dispatch.WaitReason's order).
WAIT_REASON_TEXT = {
    WaitReason.STAGING_AREA_FULL: "staging area full",
    WaitReason.STORE_LIMIT: "store at its limit",
    WaitReason.OWNER_LIMIT: "owner at their limit",
    WaitReason.HIGHER_PRIORITY: "higher priority first",
    WaitReason.IN_FLIGHT_BOUND: "all slots taken",
    WaitReason.NEXT_PASS: "next pass",
}


def _dispatch_context() -> dict:
    overview = dispatch_overview()
    return {
        "dispatch": overview,
        "dispatch_reasons": [
            (WAIT_REASON_TEXT[reason], overview.waiting[reason])
            for reason in WaitReason
            if overview.waiting.get(reason)
        ],
        "dispatch_stores": [
            (
                load,
                [
                    (WAIT_REASON_TEXT[reason], load.waiting[reason])
                    for reason in WaitReason
                    if load.waiting.get(reason)
                ],
            )
            for load in overview.stores
        ],
    }


def _jobs_url(**params) -> str:
    url = reverse("admin:staging_job_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def job_count_text(value: float) -> str:
    """A tick or total of the jobs chart: whole jobs, and a half (the middle tick of a scale to
    5) as 2.5 rather than rounded to a height it is not drawn at."""
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def _charts(hours):
    jobs_chart = stacked_bar_chart(
        title="Jobs ended per hour",
        columns=[
            (
                f"{bucket.start:%H:00}",
                [
                    Segment(bucket.jobs.get(status, 0), status_class(status), label)
                    for status, label in JOB_OUTCOMES
                ],
            )
            for bucket in hours
        ],
        legend=[(status_class(status), label) for status, label in JOB_OUTCOMES],
        value_format=job_count_text,
    )
    bytes_chart = stacked_bar_chart(
        title="Bytes staged per hour",
        columns=[
            (f"{bucket.start:%H:00}", [Segment(bucket.bytes, "bytes-staged", "staged")])
            for bucket in hours
        ],
        legend=[("bytes-staged", "bytes staged by sub-jobs that ended in the hour")],
        value_format=lambda v: filesizeformat(int(v)),
        ceiling=nice_ceiling_bytes,
    )
    return jobs_chart, bytes_chart


def dashboard(request, *, site):
    if not request.user.has_perm("staging.view_job"):
        raise PermissionDenied
    now = timezone.now()
    counts = jobs_count_by_status()
    jobs_chart, bytes_chart = _charts(activity_per_hour(hours=24, now=now))
    expired_count, expired = subjobs_lease_expired()
    failed_count, failed = jobs_failed_recently(hours=1)
    reasons = failure_reasons_by_job(job_ids=[job.pk for job in failed])
    oldest_running = job_oldest(status=JobStatus.RUNNING, by="started_at")
    oldest_waiting = job_oldest(status=JobStatus.NOT_STARTED, by="created_at")
    broker = broker_overview(timeout=BROKER_TIMEOUT_SECONDS)
    busy = subjobs_running_by_node()
    context = {
        **site.each_context(request),
        "title": "Dashboard",
        "now": now,
        "status_counts": [
            (status_badge(status), count, estimated, _jobs_url(status__exact=status))
            for status, (count, estimated) in counts.items()
        ],
        "jobs_total": sum(count for count, _ in counts.values()),
        "jobs_total_estimated": any(estimated for _, estimated in counts.values()),
        "jobs_chart": jobs_chart,
        "bytes_chart": bytes_chart,
        "oldest_running": oldest_running,
        "oldest_running_for": job_duration(oldest_running, now) if oldest_running else "",
        "oldest_waiting": oldest_waiting,
        "oldest_waiting_for": job_duration(oldest_waiting, now) if oldest_waiting else "",
        "expired_count": expired_count,
        "expired": [(s, worker_host(s.worker)) for s in expired],
        "failed_count": failed_count,
        "failed": [(job, status_badge(job.status), reasons.get(job.pk, [])) for job in failed],
        "failed_url": _jobs_url(
            status__in=",".join(FAILED_STATUSES),
            finished_at__gte=(now.replace(microsecond=0) - timedelta(hours=1)).isoformat(),
        ),
        "broker": broker,
        "workers": [(name, busy.pop(name, 0)) for name in broker.workers],
        # Nodes holding leases that did not answer the ping: busy, partitioned or dead.
        "silent_nodes": sorted(busy.items()),
        **_dispatch_context(),
        "tape_libraries": tape_overview(),
    }
    return TemplateResponse(request, "admin/staging/dashboard.html", context)
