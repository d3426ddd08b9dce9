"""Reads behind the staff dashboard: what runs, what waits, what is stuck, what failed, and how
the broker and its workers are doing. Each query is served by an index, so the page costs the
same with a thousand jobs or a million."""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import current_app
from django.db.models import Count, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from staging.broker import broker_queue_lengths
from staging.errors import listed_names
from staging.models import Job, JobStatus, SubJob
from staging.selectors import FAILED_STATUSES, failed_items_by_reason
from staging.selectors_admin import rows_count

logger = logging.getLogger(__name__)

STAGING_QUEUES = ("staging", "control")
OUTCOME_STATUSES = (
    JobStatus.FINISHED,
    JobStatus.PARTIALLY_FAILED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
)


def jobs_count_by_status() -> dict[str, tuple[int, bool]]:
    """Every status (state machine order) with its number of jobs now and whether that number
    is an estimate: exact for the active statuses, which hold few jobs; the planner's estimate
    for a terminal status past ten thousand, where an exact count would read most of the table."""
    return {status: rows_count(Job.objects.filter(status=status)) for status in JobStatus.values}


@dataclass
class HourBucket:
    start: datetime
    jobs: dict[str, int] = field(default_factory=dict)
    bytes: int = 0

    @property
    def jobs_total(self) -> int:
        return sum(self.jobs.values())


def activity_per_hour(*, hours: int = 24, now: datetime | None = None) -> list[HourBucket]:
    """The last ``hours`` hours, oldest first: jobs that ended in each hour by outcome, and bytes
    staged (by sub-jobs that ended in that hour: a sub-job is at most a few GiB, so long jobs
    spread over the hours they ran in)."""
    now = now or timezone.now()
    current = now.replace(minute=0, second=0, microsecond=0)
    since = current - timedelta(hours=hours - 1)
    buckets = {
        since + timedelta(hours=i): HourBucket(start=since + timedelta(hours=i))
        for i in range(hours)
    }
    ended = (
        Job.objects.filter(finished_at__gte=since)
        .order_by()
        .annotate(hour=TruncHour("finished_at"))
        .values_list("hour", "status")
        .annotate(n=Count("pk"))
    )
    for hour, status, n in ended:
        if hour in buckets:
            buckets[hour].jobs[status] = n
    staged = (
        SubJob.objects.filter(finished_at__gte=since)
        .order_by()
        .annotate(hour=TruncHour("finished_at"))
        .values_list("hour")
        .annotate(total=Sum("bytes_done"))
    )
    for hour, total in staged:
        if hour in buckets:
            buckets[hour].bytes = total or 0
    return list(buckets.values())


def job_oldest(*, status: str, by: str) -> Job | None:
    """The job in ``status`` with the earliest ``by`` timestamp (e.g. the longest running)."""
    return (
        Job.objects.filter(status=status)
        .select_related("store", "owner")
        .order_by(by, "pk")
        .first()
    )


def subjobs_lease_expired(*, limit: int = 10) -> tuple[int, list[SubJob]]:
    """Running sub-jobs whose worker stopped renewing its lease (dead or cut off), until the
    reaper hands them out again: how many, and the oldest few."""
    expired = SubJob.objects.filter(
        status=JobStatus.RUNNING, lease_expires_at__lt=timezone.now()
    ).select_related("job")
    return expired.count(), list(expired.order_by("lease_expires_at")[:limit])


def jobs_failed_recently(*, hours: int = 1, limit: int = 20) -> tuple[int, list[Job]]:
    """Jobs that ended FAILED or PARTIALLY_FAILED in the last ``hours``: how many, newest few."""
    failed = Job.objects.filter(
        status__in=FAILED_STATUSES, finished_at__gte=timezone.now() - timedelta(hours=hours)
    )
    newest = failed.select_related("store", "owner").order_by("-finished_at", "-pk")[:limit]
    return failed.count(), list(newest)


def failure_reasons_by_job(
    *, job_ids: list[int], per_job: int = 2, paths: int = 2
) -> dict[int, list[dict]]:
    """For each job, its commonest reasons of failed items (``error``: the reason with its
    first few store paths, ``items``), most first: one query for all the jobs of the
    dashboard's failures table."""
    grouped: dict[int, dict[str, dict]] = {}
    rows = failed_items_by_reason(job_ids=job_ids, paths=paths).values_list(
        "job_id", "reason", "path", "items"
    )
    for job_id, reason, path, items in rows:
        reasons = grouped.setdefault(job_id, {})
        if reason in reasons or len(reasons) < per_job:
            reasons.setdefault(reason, {"items": items, "paths": []})["paths"].append(path)
    return {
        job_id: [
            {
                "error": f"{reason} ({listed_names(row['paths'], count=row['items'])})",
                "items": row["items"],
            }
            for reason, row in reasons.items()
        ]
        for job_id, reasons in grouped.items()
    }


def subjobs_running_by_node() -> dict[str, int]:
    """Sub-jobs running now per Celery node (the lease holder without its process id)."""
    per_node: dict[str, int] = {}
    holders = (
        SubJob.objects.filter(status=JobStatus.RUNNING).order_by().values_list("worker", flat=True)
    )
    for holder in holders:
        node = holder.rpartition(":")[0] or holder
        per_node[node] = per_node.get(node, 0) + 1
    return per_node


@dataclass
class BrokerOverview:
    reachable: bool
    queues: dict[str, int] = field(default_factory=dict)
    workers: list[str] = field(default_factory=list)
    error: str = ""


def broker_overview(*, timeout: float = 1.0) -> BrokerOverview:
    """Messages waiting in the staging and control queues and the workers that answer a ping,
    all within about ``timeout`` seconds per step: a dead or silent broker yields an answer
    saying so, never a hung page."""
    transport_options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    try:
        with current_app.connection_for_write(
            connect_timeout=timeout, transport_options=transport_options
        ) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
            queues = broker_queue_lengths(STAGING_QUEUES, connection=connection)
            replies = current_app.control.ping(timeout=timeout, connection=connection) or []
    except Exception as exc:  # any failure of the broker is reported on the page, not raised
        logger.warning("dashboard: broker did not answer: %s", exc)
        return BrokerOverview(reachable=False, error=f"{type(exc).__name__}: {exc}")
    workers = sorted(name for reply in replies for name in reply)
    return BrokerOverview(reachable=True, queues=queues, workers=workers)
