"""Reads behind the admin's job list and job page: search, per-status counts, failure
reasons, sub-jobs with their Celery results, and counts that stay cheap on big tables."""

import json
import logging
import uuid

from django.db import DatabaseError, connections
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django_celery_results.models import TaskResult

from staging.models import File, Item, Job, JobStatus, Pin, SubJob

logger = logging.getLogger(__name__)


def jobs_search(*, jobs: QuerySet[Job], term: str) -> QuerySet[Job]:
    """Narrow ``jobs`` to those matching ``term``: a job id, else a file id (both UUID-shaped),
    else a path or path prefix of one of the job's items. The item lookups are EXISTS
    subqueries served by the item path index, never a scan of each job's items."""
    term = term.strip()
    try:
        as_uuid = uuid.UUID(term)
    except ValueError:
        as_uuid = None
    if as_uuid is not None:
        if jobs.filter(uuid=as_uuid).exists():
            return jobs.filter(uuid=as_uuid)
        items = Item.objects.filter(items_of_file(as_uuid.hex))
        return jobs.filter(Exists(items.filter(job=OuterRef("pk"))))
    return jobs.filter(Exists(Item.objects.filter(job=OuterRef("pk"), path__startswith=term)))


def items_of_file(file_id: str) -> Q:
    """The items taken from the catalogue file ``file_id``, found by its path: the item path
    index serves them, and item.file_id keeps no index of its own (one more write per file
    of a million-file request, for this search alone)."""
    path = File.objects.filter(pk=file_id).values_list("path", flat=True).first()
    if path is None:  # an item whose catalogue entry went has lost its file_id too
        return Q(pk__in=[])
    return Q(path=path, file_id=file_id)


def job_items_count_by_status(*, job: Job) -> dict[str, int]:
    """The job's items per status (only statuses that occur), in the state machine's order."""
    counts = dict(
        Item.objects.filter(job=job).order_by().values_list("status").annotate(n=Count("pk"))
    )
    return {status: counts[status] for status in JobStatus.values if status in counts}


def job_failure_reasons(*, job: Job, limit: int = 5) -> list[dict]:
    """The most frequent error messages of the job's failed items, with how many items each."""
    return list(
        Item.objects.filter(job=job, status=JobStatus.FAILED)
        .order_by()
        .values("error")
        .annotate(items=Count("pk"))
        .order_by("-items", "error")[:limit]
    )


def job_subjobs_page(*, job: Job, limit: int = 100) -> tuple[int, list[SubJob]]:
    """How many sub-jobs the job has and the first ``limit`` of them, each with ``task_result``
    (its Celery TaskResult row, or None before a worker took it) and ``lease_expired``."""
    subjobs = list(job.subjobs.order_by("sequence")[:limit])
    total = len(subjobs) if len(subjobs) < limit else job.subjobs.count()
    task_ids = [s.celery_task_id for s in subjobs if s.celery_task_id]
    results = {
        r.task_id: r
        for r in TaskResult.objects.filter(task_id__in=task_ids).only(
            "pk", "task_id", "status", "date_done"
        )
    }
    now = timezone.now()
    for subjob in subjobs:
        subjob.task_result = results.get(subjob.celery_task_id)
        subjob.lease_expired = bool(
            subjob.status == JobStatus.RUNNING
            and subjob.lease_expires_at
            and subjob.lease_expires_at < now
        )
    return total, subjobs


def job_live_pins_count(*, job: Job) -> int:
    return Pin.objects.filter(
        job=job, released_at__isnull=True, expires_at__gt=timezone.now()
    ).count()


def job_live_pins_on_staged_count(*, job: Job) -> int:
    """The job's live pins on files it staged (its finished items). A job pins every file when
    it is created; a cancelled or failed file's pin holds no copy of this job's making."""
    return Pin.objects.filter(
        job=job,
        released_at__isnull=True,
        expires_at__gt=timezone.now(),
        path__in=Item.objects.filter(job=job, status=JobStatus.FINISHED).values("path"),
    ).count()


def job_task_names() -> list[str]:
    """The task names jobs use. On PostgreSQL a recursive query hops through the (task,
    created_at) index one name at a time (a handful of probes), instead of reading every job as
    SELECT DISTINCT would."""
    connection = connections[Job.objects.db]
    if connection.vendor != "postgresql":
        return list(Job.objects.order_by("task").values_list("task", flat=True).distinct())
    table = connection.ops.quote_name(Job._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH RECURSIVE names(task) AS (
                (SELECT task FROM {table} ORDER BY task LIMIT 1)
                UNION ALL
                SELECT (SELECT j.task FROM {table} j WHERE j.task > names.task
                        ORDER BY j.task LIMIT 1)
                FROM names WHERE names.task IS NOT NULL
            )
            SELECT task FROM names WHERE task IS NOT NULL
            """
        )
        return [row[0] for row in cursor.fetchall()]


def rows_count(rows: QuerySet, *, exact_up_to: int = 10_000) -> tuple[int, bool]:
    """How many rows ``rows`` holds, and whether that is an estimate. Counts exactly up to
    ``exact_up_to`` (a LIMITed subquery: cheap however big the table); past that, PostgreSQL's
    planner estimate (from ANALYZE statistics), so no page ever counts a million rows."""
    rows = rows.order_by()
    bounded = rows[: exact_up_to + 1].count()
    if bounded <= exact_up_to:
        return bounded, False
    estimate = 0
    if connections[rows.db].vendor == "postgresql":
        try:
            estimate = int(json.loads(rows.explain(format="json"))[0]["Plan"]["Plan Rows"])
        except (DatabaseError, ValueError, LookupError) as exc:
            logger.warning("no row estimate: %s", exc)
    return max(estimate, bounded), True
