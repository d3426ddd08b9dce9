"""Every read of the staging domain that an API or admin view needs."""

import uuid
from collections.abc import Sequence

from django.db.models import QuerySet, Sum

from staging.errors import NotFoundError, ServiceError
from staging.models import File, Job, JobStatus, Store
from staging.roles import sees_all_jobs


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
    jobs = Job.objects.all()
    return jobs if sees_all_jobs(user) else jobs.filter(owner=user)


def job_status_get(*, job_uuid: uuid.UUID, user) -> str:
    """The job's status in one indexed lookup of one column; unknown and not-yours are alike."""
    status = visible_jobs(user=user).filter(uuid=job_uuid).values_list("status", flat=True).first()
    if status is None:
        raise NotFoundError(f"no staging request with id {job_uuid}")
    return status


def job_progress(*, job: Job) -> dict:
    """Files and bytes done of total, the current copy rate (sum over running sub-jobs, as
    their last progress reports measured it) and the time left at that rate."""
    rate = (
        job.subjobs.filter(status=JobStatus.RUNNING).aggregate(
            rate=Sum("bytes_per_second", default=0.0)
        )["rate"]
        if job.status == JobStatus.RUNNING
        else 0.0
    )
    remaining = max(job.bytes_total - job.bytes_done, 0)
    return {
        "files_done": job.files_done,
        "files_failed": job.files_failed,
        "files_total": job.files_total,
        "bytes_done": job.bytes_done,
        "bytes_total": job.bytes_total,
        "bytes_per_second": round(rate, 1),
        "eta_seconds": round(remaining / rate, 1) if rate > 0 else None,
    }
