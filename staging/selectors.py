"""Every read of the staging domain that an API or admin view needs."""

import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime

from django.db.models import Count, Q, QuerySet

from staging.errors import NotFoundError, ServiceError
from staging.models import File, Item, Job, Store, SubJob
from staging.roles import JobScope, job_scope


def store_get(*, slug: str | None = None) -> Store:
    """The named store, or the primary one when no name is given."""
    stores = Store.objects.all()
    store = stores.filter(slug=slug).first() if slug else stores.filter(is_primary=True).first()
    if store is None:
        raise NotFoundError(f"unknown store {slug!r}" if slug else "no primary store is set up")
    return store


def files_by_ids(*, ids: Sequence[str]) -> dict[str, File]:
    """Catalogue entries still present in their archive, keyed by id (unknown ids are absent)."""
    return {
        f.id: f
        for f in File.objects.filter(pk__in=list(set(ids)), present=True).select_related("store")
    }


def files_list(*, store: Store | None = None, path: str = "", prefix: str = "") -> QuerySet[File]:
    files = File.objects.filter(present=True).select_related("store").order_by("store", "path")
    if store is not None:
        files = files.filter(store=store)
    if path:
        files = files.filter(path=path)
    if prefix:
        files = files.filter(path__startswith=prefix)
    return files


def parse_job_id(raw: str | None) -> uuid.UUID:
    if not raw:
        raise ServiceError("the job id is missing", field="id")
    try:
        return uuid.UUID(str(raw))
    except ValueError as exc:
        raise ServiceError(f"{raw!r} is not a valid job id (a UUID)", field="id") from exc


def visible_jobs(*, user) -> QuerySet[Job]:
    """The jobs ``user`` may see (staging.roles): all, own plus administered stores, or own.

    The administered stores are a subquery, so a lookup by id stays one statement and a job is
    never repeated when its store has several administrators."""
    jobs = Job.objects.all()
    scope = job_scope(user)
    if scope == JobScope.ALL:
        return jobs
    if scope == JobScope.ADMINISTERED_STORES:
        administered = Store.administrators.through.objects.filter(user_id=user.pk).values(
            "store_id"
        )
        return jobs.filter(Q(owner=user) | Q(store_id__in=administered))
    return jobs.filter(owner=user)


def job_status_get(*, job_uuid: uuid.UUID, user) -> str:
    """The job's status in one indexed lookup of one column; unknown and not-yours are alike."""
    found = (
        visible_jobs(user=user).filter(uuid=job_uuid).order_by().values_list("status", flat=True)
    )
    status = next(iter(found[:1]), None)
    if status is None:
        raise NotFoundError(f"no staging request with id {job_uuid}")
    return status


# --- API v1 -------------------------------------------------------------------------------------

# What the status calls read: one row of the job, these columns only.
JOB_STATUS_FIELDS = (
    "status",
    "files_total",
    "files_done",
    "files_failed",
    "bytes_total",
    "bytes_done",
    "updated_at",
)


def _job_uuid_in_path(raw: str) -> uuid.UUID:
    """A job id taken from a URL path; anything that is not a UUID names no job (404)."""
    try:
        return uuid.UUID(str(raw))
    except ValueError as exc:
        raise NotFoundError(f"no job with id {raw!r}") from exc


def job_status_row(*, job_id: str, user) -> dict:
    """The status columns of a visible job, in one indexed lookup (the cheap poll)."""
    job_uuid = _job_uuid_in_path(job_id)
    found = visible_jobs(user=user).filter(uuid=job_uuid).order_by().values(*JOB_STATUS_FIELDS)
    row = next(iter(found[:1]), None)
    if row is None:
        raise NotFoundError(f"no job with id {job_uuid}")
    return row


def job_get(*, job_id: str, user) -> Job:
    """A job the user may see, with its store and owner; unknown and not-yours are alike."""
    job_uuid = _job_uuid_in_path(job_id)
    job = visible_jobs(user=user).select_related("store", "owner").filter(uuid=job_uuid).first()
    if job is None:
        raise NotFoundError(f"no job with id {job_uuid}")
    return job


def jobs_list(
    *,
    user,
    status: str = "",
    task: str = "",
    store: Store | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[Job]:
    jobs = visible_jobs(user=user).select_related("store")
    if status:
        jobs = jobs.filter(status=status)
    if task:
        jobs = jobs.filter(task=task)
    if store is not None:
        jobs = jobs.filter(store=store)
    if created_after is not None:
        jobs = jobs.filter(created_at__gte=created_after)
    if created_before is not None:
        jobs = jobs.filter(created_at__lt=created_before)
    return jobs


def job_by_idempotency_key(*, owner, key: str) -> Job | None:
    return Job.objects.filter(owner=owner, idempotency_key=key).first()


def job_subjob_counts(*, job: Job) -> dict[str, int]:
    """How many of the job's sub-jobs are in each status."""
    rows = SubJob.objects.filter(job=job).values("status").annotate(n=Count("pk"))
    return {row["status"]: row["n"] for row in rows.order_by()}


def job_items(*, job: Job, status: str = "", subjob: int | None = None) -> QuerySet[Item]:
    items = Item.objects.filter(job=job).select_related("subjob")
    if status:
        items = items.filter(status=status)
    if subjob is not None:
        items = items.filter(subjob__sequence=subjob)
    return items


# Columns of a job's result rows (JSON objects and CSV lines alike).
RESULT_COLUMNS = (
    "path",
    "file_id",
    "size",
    "status",
    "bytes_done",
    "attempts",
    "error",
    "finished_at",
)


def job_result_rows(*, job: Job, chunk_size: int = 2000) -> Iterator[tuple]:
    """The job's items as result rows, streamed from the database in chunks."""
    return (
        Item.objects.filter(job=job)
        .order_by("pk")
        .values_list(*RESULT_COLUMNS)
        .iterator(chunk_size=chunk_size)
    )


def job_subjobs(*, job: Job) -> QuerySet[SubJob]:
    return SubJob.objects.filter(job=job).order_by("sequence")


def subjob_get(*, job: Job, subjob_id: str) -> SubJob:
    """A sub-job by its position in the job (1, 2, …); anything else names no sub-job."""
    if not subjob_id.isdecimal() or len(subjob_id) > 9:
        raise NotFoundError(f"job {job.uuid} has no sub-job {subjob_id!r}")
    subjob = SubJob.objects.filter(job=job, sequence=int(subjob_id)).first()
    if subjob is None:
        raise NotFoundError(f"job {job.uuid} has no sub-job {subjob_id!r}")
    return subjob


def job_paths_not_in(*, job: Job, paths: Sequence[str]) -> list[str]:
    """The given paths that are not items of the job, in the order given."""
    known = set(
        Item.objects.filter(job=job, path__in=list(set(paths))).values_list("path", flat=True)
    )
    return [p for p in paths if p not in known]
