"""Every read of the staging domain that an API or admin view needs."""

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from django.db.models import QuerySet, Sum

from staging.errors import NotFoundError, ServiceError
from staging.models import File, Item, Job, JobStatus, Store
from staging.results import results_file_read
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


def files_by_paths(*, store: Store, paths: Sequence[str]) -> dict[str, File]:
    """Catalogue entries of ``store`` still present in its archive, keyed by path (clean
    relative paths; unknown ones are absent)."""
    return {
        f.path: f
        for f in File.objects.filter(
            store=store, path__in=list(set(paths)), present=True
        ).select_related("store")
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


# Item columns a task's result rows may name; any other column is a key of the item's result.
DEFAULT_RESULT_COLUMNS = (
    "path",
    "file_id",
    "size",
    "status",
    "bytes_done",
    "attempts",
    "error",
    "finished_at",
)
ITEM_RESULT_FIELDS = frozenset(DEFAULT_RESULT_COLUMNS) | {"started_at"}


@dataclass
class ResultTable:
    """A job's results: named columns, rows read lazily, and the summary beside them."""

    columns: tuple[str, ...]
    rows: Iterator[Sequence]
    summary: dict


def job_item_rows(*, job: Job, columns: Sequence[str], chunk_size: int = 2000) -> Iterator[tuple]:
    """The job's items as rows of ``columns``, streamed from the database in chunks."""
    fields = [c for c in columns if c in ITEM_RESULT_FIELDS]
    extra = [c for c in columns if c not in ITEM_RESULT_FIELDS]
    values = Item.objects.filter(job=job).order_by("pk").values_list(*fields, "result")
    for row in values.iterator(chunk_size=chunk_size):
        named = dict(zip(fields, row, strict=False))
        result = row[-1] or {}
        named.update({c: result.get(c) for c in extra})
        yield tuple(named[c] for c in columns)


def job_result_table(*, job: Job) -> ResultTable:
    """The job's results as its task declares them: rows from its results file when it has
    one (a scan), else one row per item; the summary is the job's outcome (plus, for tasks of
    one item, what that item found)."""
    # The catalogue imports services that import this module: look it up at call time.
    from tasks.catalogue import task_type_get

    task = task_type_get(job.task)
    summary = dict(job.result or {})
    if task is not None and task.summary_from_item:
        summary.update(
            Item.objects.filter(job=job).order_by("pk").values_list("result", flat=True).first()
            or {}
        )
    if job.result_file:
        columns, rows = results_file_read(job.result_file)
        return ResultTable(columns, rows, summary)
    columns = task.result_columns if task is not None else DEFAULT_RESULT_COLUMNS
    return ResultTable(tuple(columns), job_item_rows(job=job, columns=columns), summary)
