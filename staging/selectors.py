"""Every read of the staging domain that an API or admin view needs."""

import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime

from django.db import connection
from django.db.models import (
    Case,
    Count,
    DateTimeField,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    TextField,
    Value,
    When,
    Window,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Concat, Left, Length, RowNumber, Substr
from django.template.defaultfilters import pluralize

from staging.errors import NotFoundError, listed_names
from staging.models import File, Item, Job, JobStatus, Pin, Store, SubJob
from staging.roles import JobScope, job_scope
from staging.statements import statements


def store_get(*, slug: str | None = None) -> Store:
    """The named store, or the primary one when no name is given."""
    stores = Store.objects.all()
    store = stores.filter(slug=slug).first() if slug else stores.filter(is_primary=True).first()
    if store is None:
        raise NotFoundError(f"unknown store {slug!r}" if slug else "no primary store is set up")
    return store


def values_in(values: Sequence[str]):
    """The right side of an ``__in`` lookup on a text column for ``values``, however many: on
    PostgreSQL one array parameter (``IN (SELECT unnest(%s))``), since 10,000 placeholders
    cost more to build and send than the index lookups they ask for; elsewhere the list."""
    if connection.vendor != "postgresql":
        return list(values)
    return RawSQL("SELECT unnest(%s::varchar[])", [list(values)])


def files_by_ids(*, ids: Sequence[str], full: bool = True) -> dict[str, File]:
    """Catalogue entries still present in their archive, keyed by id (unknown ids are absent),
    with their stores. Not ``full``: only id, store_id, path and size are read (what a job's
    items take; any other field costs a query per file), so that a request of 10,000 files
    does not build 10,000 stores and decode 10,000 metadata documents for nothing."""
    files = File.objects.filter(pk__in=values_in(set(ids)), present=True)
    files = files.select_related("store") if full else files.only("id", "store_id", "path", "size")
    return {f.id: f for f in files}


def files_rows_by_ids(*, store: Store, ids: Sequence[str]) -> dict[str, tuple[str, str, int]]:
    """(id, path, size) of the catalogue entries of ``store`` still present in its archive,
    keyed by id (unknown ids are absent): plain rows, for requests of many files."""
    return {
        row[0]: row
        # No ordering: the catalogue's default (store slug, path) would join and sort.
        for row in File.objects.filter(store=store, pk__in=values_in(ids), present=True)
        .order_by()
        .values_list("id", "path", "size")
    }


def files_rows_by_paths(*, store: Store, paths: Sequence[str]) -> dict[str, tuple[str, str, int]]:
    """``files_rows_by_ids`` keyed by path, for ``paths`` (clean relative paths)."""
    return {
        row[1]: row
        for row in File.objects.filter(store=store, path__in=values_in(paths), present=True)
        .order_by()
        .values_list("id", "path", "size")
    }


def files_by_paths(*, store: Store, paths: Sequence[str]) -> dict[str, File]:
    """Catalogue entries of ``store`` still present in its archive, keyed by path (clean
    relative paths; unknown ones are absent)."""
    return {
        f.path: f
        for f in File.objects.filter(
            store=store, path__in=values_in(set(paths)), present=True
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


def visible_jobs(*, user) -> QuerySet[Job]:
    """The jobs ``user`` may see (staging.roles): all, own plus administered stores, or own.

    The administered stores are a subquery, so a lookup by id stays one statement and a job is
    never repeated when its store has several administrators."""
    return _jobs_in_scope(job_scope(user), user.pk)


def _jobs_in_scope(scope: JobScope, user_id: int | None) -> QuerySet[Job]:
    jobs = Job.objects.all()
    if scope == JobScope.ALL:
        return jobs
    if scope == JobScope.ADMINISTERED_STORES:
        administered = Store.administrators.through.objects.filter(user_id=user_id).values(
            "store_id"
        )
        return jobs.filter(Q(owner_id=user_id) | Q(store_id__in=administered))
    return jobs.filter(owner_id=user_id)


def _job_status_lookup(*, job_uuid: uuid.UUID, user, fields: tuple[str, ...]) -> dict | None:
    """One visible job's ``fields`` (with what job_status_error needs) by its indexed UUID, or
    None. The statement is compiled once per process and job scope (staging.statements): on a
    status poll, building the query cost more than running it."""
    scope = job_scope(user)
    args = {"job_uuid": job_uuid}
    if scope != JobScope.ALL:
        args["user_id"] = user.pk

    def build(job_uuid, user_id=None):
        return (
            _jobs_in_scope(scope, user_id)
            .filter(uuid=job_uuid)
            .order_by()
            .values("id", *fields, **_ERROR_LOOKUP)[:1]
        )

    rows = statements.rows(("job-status", scope, fields), build, **args)
    return rows[0] if rows else None


def job_status_get(*, job_uuid: uuid.UUID, user) -> dict:
    """The job's ``status`` (with what job_status_error needs) in one indexed lookup; unknown
    and not-yours are alike."""
    row = _job_status_lookup(job_uuid=job_uuid, user=user, fields=("status",))
    if row is None:
        raise NotFoundError(f"no staging request with id {job_uuid}")
    return row


# The statuses in which a job tells why: it ended, and files (or the job itself) failed.
FAILED_STATUSES = (JobStatus.FAILED, JobStatus.PARTIALLY_FAILED)


# Read with a status row for job_status_error: a failed job's own error (a failed job that
# recorded one then costs no further query), NULL for any other, so a poll of a running job
# still reads no error text. Not an answer field: serializers skip it.
_ERROR_LOOKUP = {
    "own_error": Case(
        When(status__in=FAILED_STATUSES, then=F("error")), default=None, output_field=TextField()
    )
}


def job_status_error(row: dict) -> str:
    """Why the job of a status row (job_status_get, job_status_row) failed; "" unless it did.
    Costs no query for a job that recorded its own error, one for any other failed job (its
    failed items by reason), none for a job that did not fail."""
    if row["status"] not in FAILED_STATUSES:
        return ""
    return job_failure_text(job_id=row["id"], own_error=row["own_error"])


# --- API v1 -------------------------------------------------------------------------------------

# What the status calls read: one row of the job, these columns only.
JOB_STATUS_FIELDS = (
    "status",
    "waiting",
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
    """The status columns of a visible job, with what job_status_error needs, in one indexed
    lookup (the cheap poll)."""
    job_uuid = _job_uuid_in_path(job_id)
    row = _job_status_lookup(job_uuid=job_uuid, user=user, fields=JOB_STATUS_FIELDS)
    if row is None:
        raise NotFoundError(f"no job with id {job_uuid}")
    return row


def job_status_rows_by_pk(*, job_ids) -> dict[int, dict]:
    """The status columns of these jobs by primary key, in one query. No visibility rule: the
    change watcher of waiting requests reads them for callers that passed it already."""
    jobs = Job.objects.filter(pk__in=list(job_ids)).order_by()
    return {row["id"]: row for row in jobs.values("id", *JOB_STATUS_FIELDS)}


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


def item_times() -> dict:
    """Annotations of an item's times beyond its own ``started_at`` and ``finished_at``:

    - ``queued_at``: when it entered the queue, i.e. when its sub-job was created: the job's
      submission, or the retry that queued it again (null for a file that failed at once);
    - ``pinned_until``: while its staged copy is pinned for the job, when that pin's lifetime
      ends (only for a FINISHED item: no other has a copy);
    - ``released_at``: when the job's pin on it was released, if it was.

    The pin is the job's one pin on the item's path, read by the unique (job, path) index."""
    pin = Pin.objects.filter(job_id=OuterRef("job_id"), path=OuterRef("path"))
    return {
        "queued_at": F("subjob__created_at"),
        "pinned_until": Case(
            When(status=JobStatus.FINISHED, then=Subquery(pin.values("expires_at")[:1])),
            default=None,
            output_field=DateTimeField(),
        ),
        "released_at": Subquery(pin.values("released_at")[:1]),
    }


def job_items(*, job: Job, status: str = "", subjob: int | None = None) -> QuerySet[Item]:
    items = Item.objects.filter(job=job).select_related("subjob").annotate(**item_times())
    if status:
        items = items.filter(status=status)
    if subjob is not None:
        items = items.filter(subjob__sequence=subjob)
    return items


# Columns of a job's result rows (JSON objects and CSV lines alike) for tasks whose rows are its
# files (stage, restore-content); other tasks name theirs (staging.catalogue.result_table).
RESULT_COLUMNS = (
    "path",
    "file_id",
    "size",
    "status",
    "bytes_done",
    "attempts",
    "error",
    "finished_at",
    # Later additions, after the first columns so that readers by position keep working.
    "queued_at",
    "started_at",
    "pinned_until",
    "released_at",
    # Where the file is on tape (posix-tape stores with a tape map; blank otherwise).
    "tape_vid",
    "tape_position",
)
# Result columns read from the item's catalogue file.
FILE_RESULT_FIELDS = {"tape_vid": F("file__tape_vid"), "tape_position": F("file__tape_position")}


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


# --- WLCG tape API -------------------------------------------------------------------------

# Job.source of the tape API's stage requests (their paths map into stores: staging.tape_namespace).
TAPE_SOURCE = "tape"


def stage_request_get(*, request_id: str, user) -> Job:
    """A stage request of the tape API the user may see; unknown, malformed, deleted and
    not-yours ids are all alike (404)."""
    try:
        job_uuid = uuid.UUID(str(request_id))
    except ValueError:
        raise NotFoundError(f"no stage request with id {request_id}") from None
    job = (
        visible_jobs(user=user)
        .filter(uuid=job_uuid, source=TAPE_SOURCE)
        .exclude(parameters__tape__has_key="deleted_at")
        .select_related("store")
        .first()
    )
    if job is None:
        raise NotFoundError(f"no stage request with id {request_id}")
    return job


# --- Results ------------------------------------------------------------------------------

# Item columns a task's result rows may name; any other column is a key of the item's result.
ITEM_RESULT_FIELDS = frozenset(RESULT_COLUMNS)


def job_item_rows(*, job: Job, columns: Sequence[str], chunk_size: int = 2000) -> Iterator[tuple]:
    """The job's items as rows of ``columns``, streamed from the database in chunks."""
    fields = [c for c in columns if c in ITEM_RESULT_FIELDS]
    extra = [c for c in columns if c not in ITEM_RESULT_FIELDS]
    times = {name: value for name, value in item_times().items() if name in fields}
    times |= {name: value for name, value in FILE_RESULT_FIELDS.items() if name in fields}
    items = Item.objects.filter(job=job).annotate(**times)
    values = items.order_by("pk").values_list(*fields, "result")
    for row in values.iterator(chunk_size=chunk_size):
        named = dict(zip(fields, row, strict=False))
        result = row[-1] or {}
        named.update({c: result.get(c) for c in extra})
        yield tuple(named[c] for c in columns)


def item_failure_reason():
    """An item's error without its path, so that failures group by reason: the error ends
    ``: <the item's path>`` or starts ``<the item's path> `` (staging.client_errors)."""
    ends_with_path = Q(error__endswith=Concat(Value(": "), F("path"), output_field=TextField()))
    starts_with_path = Q(error__startswith=Concat(F("path"), Value(" "), output_field=TextField()))
    return Case(
        When(ends_with_path, then=Left("error", Length("error") - Length("path") - 2)),
        When(starts_with_path, then=Substr("error", Length("path") + 2)),
        When(error="", then=Value("no message")),
        default=F("error"),
        output_field=TextField(),
    )


def failed_items_by_reason(*, job_ids: Sequence[int], paths: int) -> QuerySet[Item]:
    """The failed items of the jobs, the first ``paths`` (by path) of each reason of each job,
    with their ``reason``, how many ``items`` of their job failed for it and how many ``failed``
    in their job at all; commonest reasons first."""
    reason_in_job = [F("job_id"), F("reason")]
    return (
        Item.objects.filter(job_id__in=job_ids, status=JobStatus.FAILED)
        .annotate(reason=item_failure_reason())
        .annotate(
            failed=Window(Count("pk"), partition_by=[F("job_id")]),
            items=Window(Count("pk"), partition_by=reason_in_job),
            place=Window(RowNumber(), partition_by=reason_in_job, order_by=[F("path").asc()]),
        )
        .filter(place__lte=paths)
        .order_by("job_id", "-items", "reason", "place")
    )


def job_failure_text(
    *, job_id: int, own_error: str | None = None, reasons: int = 3, paths: int = 3
) -> str:
    """Why a job failed, for a client: its own error when it recorded one, else how many of
    its files failed, and for the commonest reasons how many and the first few store paths
    ("" when nothing failed). ``own_error`` None: the job's error is read in the same query as
    its items (a second one only when no item failed)."""
    if own_error:
        return own_error

    def build(job_id):
        return (
            failed_items_by_reason(job_ids=[job_id], paths=paths)
            .annotate(own_error=Subquery(Job.objects.filter(pk=job_id).values("error")[:1]))
            .values("reason", "path", "items", "failed", "own_error")[: reasons * paths]
        )

    # Compiled once per process (staging.statements): its window functions cost the ORM far
    # more to build than PostgreSQL to run, on every poll of a failed job.
    rows = [
        (row["reason"], row["path"], row["items"], row["failed"], row["own_error"])
        for row in statements.rows(("job-failure", reasons, paths), build, job_id=job_id)
    ]
    if own_error is None:
        if rows:
            own_error = rows[0][4]
        else:
            own_error = Job.objects.filter(pk=job_id).values_list("error", flat=True).first()
        if own_error:
            return own_error
    if not rows:
        return ""
    grouped: dict[str, tuple[int, list[str]]] = {}
    for reason, path, items, _, _ in rows:
        if reason in grouped or len(grouped) < reasons:
            grouped.setdefault(reason, (items, []))[1].append(path)
    failed = rows[0][3]
    shown = "; ".join(
        f"{reason} ({items}: {listed_names(listed, count=items)})"
        for reason, (items, listed) in grouped.items()
    )
    others = failed - sum(items for items, _ in grouped.values())
    more = f"; {others} more for other reasons" if others else ""
    return f"{failed} file{pluralize(failed)} failed: {shown}{more}"


def job_error_text(*, job: Job, reasons: int = 3) -> str:
    """Why the job failed, for a client: see job_failure_text."""
    return job_failure_text(job_id=job.pk, own_error=job.error, reasons=reasons)
