"""Job lifecycle writes: create, cancel, retry, roll up. Every status change is a transition of
staging.services.transitions; the broker's messages are staging.services.publishing's."""

import functools
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from staging.errors import ConflictError, ServiceError
from staging.models import (
    ACTIVE_STATUSES,
    File,
    Item,
    Job,
    JobStatus,
    Pin,
    Store,
    StoreKind,
    SubJob,
)
from staging.services import transitions
from staging.services.accounts import account_work_admit
from staging.services.dispatch import (
    ADVISORY_LOCK_ID,
    dispatch_at_submission_possible,
    dispatch_wake,
    subjob_dispatch_submitted,
    subjobs_submitted,
)
from staging.services.job_rows import (
    ARRAYS_SOURCE,
    items_and_pins_insert,
    names_copy,
    rows_counted,
    rows_found_only,
    rows_in_database,
    rows_of_catalogue,
    rows_resolve_paths,
    rows_slices,
    rows_slices_place,
    rows_unknown,
    rows_unknown_names,
    subjobs_insert,
)
from staging.services.publishing import subjob_message_send
from staging.services.staging_space import staging_space_admit

logger = logging.getLogger(__name__)


class _Slicer:
    """Places a job's items, one at a time in request order, in slices (sub-jobs) bounded by
    file count and bytes (a file larger than the byte bound gets a slice of its own), keeping
    only each slice's totals: a million-file job is placed as it streams in.

    ``linked`` (or a callable answering it when the first item is placed, for a request whose
    store is known only once its files are read): the job stages by hard links of microseconds
    each (``store_links_cheaply``), so its slices hold SUBJOB_MAX_LINKS files: a sub-job's fixed
    cost (claim, end, dispatch pass) is spread over more of them. When the number of items is known
    (``expected``), such slices are evened out (1,024 links: two of 512, not 1,000 and 24),
    so no small last slice waits for a worker while the others run."""

    def __init__(
        self, *, linked: bool | Callable[[], bool] = False, expected: int | None = None
    ) -> None:
        self.linked, self.expected = linked, expected
        self.max_files: int | None = None
        self.max_bytes = settings.STAGING["SUBJOB_MAX_BYTES"]
        self.totals: list[list[int]] = []  # [files, bytes] of each slice

    def place(self, size: int) -> int:
        """The slice of the next item, numbered from 1."""
        if self.max_files is None:
            self.max_files = self.files_per_slice()
        current = self.totals[-1] if self.totals else None
        if current is None or current[0] >= self.max_files or current[1] + size > self.max_bytes:
            current = [0, 0]
            self.totals.append(current)
        current[0] += 1
        current[1] += size
        return len(self.totals)

    def files_per_slice(self) -> int:
        if not (self.linked() if callable(self.linked) else self.linked):
            return settings.STAGING["SUBJOB_MAX_FILES"]
        most = settings.STAGING["SUBJOB_MAX_LINKS"]
        if not self.expected:
            return most
        slices = -(-self.expected // most)
        return -(-self.expected // slices)


def store_links_cheaply(store: Store) -> bool:
    """Whether staging from ``store`` is mostly hard links of microseconds each: not where an
    item waits for something first (a tape recall, a simulated latency)."""
    return store.hard_link and store.kind == StoreKind.POSIX and not store.simulated_latency_ms


@transaction.atomic
def job_create_staging(
    *,
    owner,
    store: Store,
    files: Sequence[File],
    source: str,
    lifetime: timedelta | None = None,
    parameters: dict | None = None,
    idempotency_key: str = "",
    task: str = "stage",
) -> Job:
    """Create a staging job for ``files`` of ``store`` with its sub-jobs, items and pins, and
    wake the dispatcher once the transaction commits."""
    if not files:
        raise ServiceError("a staging request needs at least one file", field="ids")
    if any(f.store_id != store.pk for f in files):
        raise ServiceError("all files of one request must belong to the same store", field="ids")
    sizes = [f.size for f in files]
    job = _staging_job_begin(
        owner=owner,
        store=store,
        files_total=len(sizes),
        bytes_total=sum(sizes),
        source=source,
        lifetime=lifetime,
        parameters=parameters,
        idempotency_key=idempotency_key,
        task=task,
    )
    expires_at = timezone.now() + job.lifetime
    if not rows_in_database():
        items = [Item(job=job, file=f, path=f.path, size=f.size) for f in files]
        _attach_subjobs(job, items, first_sequence=1, linked=store_links_cheaply(store))
        Item.objects.bulk_create(items)
        Pin.objects.bulk_create(
            (Pin(job=job, store=store, path=f.path, expires_at=expires_at) for f in files),
            ignore_conflicts=True,
        )
        return job
    slicer = _Slicer(linked=store_links_cheaply(store), expected=len(sizes))
    slices = [slicer.place(size) for size in sizes]
    _staging_rows_insert(
        job,
        slicer,
        source=ARRAYS_SOURCE,
        source_params=[[f.id for f in files], [f.path for f in files], sizes, slices],
        expires_at=expires_at,
    )
    return job


@dataclass
class StagingRows:
    """The files of a staging request too big to hold, read as they came (``staging_rows_copy``):
    on PostgreSQL copied into a temporary table and placed in their sub-jobs; elsewhere held."""

    files_total: int = 0
    bytes_total: int = 0
    table: str | None = None
    slicer: _Slicer | None = None
    held: list[tuple[str, str, int]] = field(default_factory=list)
    # Names that matched no file (``staging_rows_resolve``): how many, and (place, name) of
    # the first or all of them.
    unknown_count: int = 0
    unknown: list[tuple[str, str]] = field(default_factory=list)


def staging_rows_copy(
    chunks: Iterable[Sequence[tuple[str, str, int]]], *, linked: bool | Callable[[], bool] = False
) -> StagingRows:
    """Read ``chunks`` of catalogue files (id, path, size; in request order, without repeats)
    as they come. On PostgreSQL each chunk is copied (``COPY``) into a temporary table dropped
    at commit (call this in the transaction that creates the job), numbered and placed in its
    slice as it comes, so the web process holds one chunk and the slices' totals. ``linked``:
    the store stages by cheap hard links (see ``_Slicer``, ``store_links_cheaply``)."""
    if not rows_in_database():
        held = [row for chunk in chunks for row in chunk]
        return StagingRows(len(held), sum(size for _, _, size in held), held=held)
    rows = StagingRows(
        table=f"staging_request_rows_{uuid.uuid4().hex}", slicer=_Slicer(linked=linked)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE {rows.table} (pos bigint, file_id varchar(64), "
            "path varchar(1024), size bigint, slice integer) ON COMMIT DROP"
        )
        for chunk in chunks:
            copy_sql = f"COPY {rows.table} (pos, file_id, path, size, slice) FROM STDIN"
            with cursor.copy(copy_sql) as copy:
                for file_id, path, size in chunk:
                    rows.files_total += 1
                    rows.bytes_total += size
                    copy.write_row((rows.files_total, file_id, path, size, rows.slicer.place(size)))
    return rows


def staging_rows_resolve(
    names: Iterable[tuple[str, str]],
    *,
    by: str,
    store: Store | Callable[[], Store | None],
    listed_at_most: int | None = None,
    register: Callable[[list[str]], dict[str, tuple[str, str, int]]] | None = None,
    drop_repeats: bool = False,
) -> StagingRows:
    """``staging_rows_copy`` for names not yet resolved, on PostgreSQL: catalogue ids or paths
    (``by``) of ``store`` (or a callable answering it once the names are read), each with where
    it is (for errors), in request order, without repeats unless ``drop_repeats`` drops them.
    They are copied into a temporary table as they come and resolved against the catalogue by
    one join, not by a query per chunk (a million index lookups sent as arrays cost a third of
    a million-file request).

    Paths of no present file are offered to ``register`` (a chunk of them; it answers the
    files it entered in the catalogue, keyed by path); names still unknown are counted and
    listed (the first ``listed_at_most``, or all) in ``unknown``, and left out of the rows.
    Call it in the transaction that creates the job."""
    stem = uuid.uuid4().hex
    names_table = f"staging_request_names_{stem}"
    count = names_copy(names_table, names, drop_repeats=drop_repeats)
    rows = StagingRows(table=f"staging_request_rows_{stem}")
    if not count:
        return rows  # no file: refused before the table is read
    known = store() if callable(store) else store
    slicer = rows.slicer = _Slicer(linked=store_links_cheaply(known))
    slicer.max_files = slicer.files_per_slice()
    rows.files_total, rows.bytes_total, rows.unknown_count = rows_of_catalogue(
        names_table=names_table,
        names=count,
        rows_table=rows.table,
        store_id=known.pk,
        by=by,
        files_per_slice=slicer.max_files,
    )
    if rows.unknown_count and register is not None:
        for chunk in rows_unknown_names(rows.table):
            rows_resolve_paths(rows.table, list(register(chunk).values()))
        rows.files_total, rows.bytes_total, rows.unknown_count = rows_counted(rows.table)
    if rows.unknown_count:
        rows.unknown = rows_unknown(rows.table, at_most=listed_at_most)
        if register is None or not rows.files_total:
            return rows  # refused, or nothing to stage
        found_table = f"staging_request_found_{stem}"
        rows_found_only(rows.table, found_table, files_per_slice=slicer.max_files)
        rows.table = found_table
    totals = rows_slices(rows.table, max_bytes=slicer.max_bytes)
    if totals is None:
        rows_slices_place(rows.table, slicer.place)
    else:
        slicer.totals = totals
    return rows


@transaction.atomic
def job_create_staging_from_rows(
    *,
    owner,
    store: Store,
    rows: StagingRows,
    source: str,
    lifetime: timedelta | None = None,
    parameters: dict | None = None,
    idempotency_key: str = "",
    task: str = "stage",
) -> Job:
    """``job_create_staging`` for the files ``staging_rows_copy`` read (files of ``store``):
    the owner's limits checked, the store locked and the job, sub-jobs, items and pins written
    from the temporary table, as for a small request."""
    if not rows.files_total:
        raise ServiceError("a staging request needs at least one file", field="ids")
    fields = {
        "owner": owner,
        "store": store,
        "source": source,
        "lifetime": lifetime,
        "parameters": parameters,
        "idempotency_key": idempotency_key,
        "task": task,
    }
    if rows.table is None:
        files = [File(id=i, store=store, path=p, size=s) for i, p, s in rows.held]
        return job_create_staging(files=files, **fields)
    job = _staging_job_begin(files_total=rows.files_total, bytes_total=rows.bytes_total, **fields)
    _staging_rows_insert(
        job,
        rows.slicer,
        source=f"{rows.table} AS t",
        source_params=[],
        expires_at=timezone.now() + job.lifetime,
        in_table=True,
    )
    return job


def _staging_job_begin(
    *,
    owner,
    store: Store,
    files_total: int,
    bytes_total: int,
    source: str,
    lifetime: timedelta | None,
    parameters: dict | None,
    idempotency_key: str,
    task: str,
) -> Job:
    """Admit the owner's new work, take the store's lock (``store`` may be a reference by
    primary key: its row is read under the lock), admit the work's size into its staging area,
    and write the job row."""
    account_work_admit(owner=owner, files=files_total, size=bytes_total, task=task)
    # The sweeper holds this lock while it picks unpinned copies and renames them aside (see
    # staged_copies_sweep), so it never takes a copy this job's new pins hold.
    store = Store.objects.select_for_update().get(pk=store.pk)
    staging_space_admit(store=store, size=bytes_total)
    job = Job.objects.create(
        task=task,
        store=store,
        owner=owner,
        source=source,
        parameters=parameters or {},
        lifetime=lifetime or settings.STAGING["DEFAULT_LIFETIME"],
        idempotency_key=idempotency_key,
        files_total=files_total,
        bytes_total=bytes_total,
    )
    if store.default_deadline is not None:
        # A request that names its own deadline replaces this before the transaction commits.
        job_deadline_set(job=job, deadline=store.default_deadline)
    return job


def job_deadline_set(*, job: Job, deadline: timedelta) -> None:
    """Give the job until its creation plus ``deadline`` (see staging.services.deadlines)."""
    job.deadline_at = job.created_at + deadline
    Job.objects.filter(pk=job.pk).update(deadline_at=job.deadline_at)


def _staging_rows_insert(
    job: Job,
    slicer: _Slicer,
    *,
    source: str,
    source_params: Sequence,
    expires_at,
    in_table: bool = False,
) -> None:
    """The sub-jobs (``slicer``'s slices), items and pins of a staging job whose item rows
    ``source`` holds: arrays sent as parameters, or (``in_table``) a table that
    ``staging_rows_copy`` or ``staging_rows_resolve`` filled, without repeats (a path names one
    catalogue file, so no two of its rows share a path). A job of one sub-job that a pass would
    hand out at once is handed out here, in the same transaction (``subjob_dispatch_submitted``);
    the others wait for the pass woken on commit."""
    subjob_ids = _subjobs_create(job, slicer.totals, first_sequence=1, announce=False)
    at_once = dispatch_at_submission_possible(
        store=job.store, task=job.task, subjobs=len(subjob_ids)
    )
    # The pins' statement takes the dispatcher's lock, so the check that follows reads what
    # every pass before it committed, and none runs beside it.
    locked = items_and_pins_insert(
        job=job,
        subjob_ids=subjob_ids,
        source=source,
        source_params=source_params,
        expires_at=expires_at,
        rows=job.files_total,
        paths_distinct=in_table,
        pins_from_source=in_table,
        try_lock=ADVISORY_LOCK_ID if at_once else None,
    )
    task_id = subjob_dispatch_submitted(subjob_id=subjob_ids[0], job=job) if locked else None
    if task_id is None:
        _subjobs_announce(job)
    else:
        transaction.on_commit(
            functools.partial(
                subjob_message_send, subjob_id=subjob_ids[0], task_id=task_id, job_uuid=job.uuid
            )
        )


@transaction.atomic
def job_create(
    *,
    owner,
    store: Store,
    task: str,
    source: str,
    items: Sequence[Item],
    parameters: dict | None = None,
    lifetime: timedelta | None = None,
) -> Job:
    """Create a job of a catalogue task that pins nothing (scan, checksum, release, noop): its
    items (unsaved ``Item``s with path, size and file) sliced into sub-jobs, which the
    dispatcher publishes once the transaction commits. A job without items gets one empty
    sub-job, so a worker still runs it and the roll-up still ends it. Staging jobs, which pin
    their copies, use ``job_create_staging``."""
    if task != "release":  # releasing frees space: never refused for being busy
        account_work_admit(
            owner=owner, files=len(items), size=sum(i.size for i in items), task=task
        )
    job = Job.objects.create(
        task=task,
        store=store,
        owner=owner,
        source=source,
        parameters=parameters or {},
        lifetime=lifetime if lifetime is not None else timedelta(0),
        files_total=len(items),
        bytes_total=sum(item.size for item in items),
    )
    for item in items:
        item.job = job
    if items:
        _attach_subjobs(job, items, first_sequence=1)
        Item.objects.bulk_create(items)
    else:
        SubJob.objects.create(job=job, sequence=1)
        transaction.on_commit(dispatch_wake)
    return job


def _attach_subjobs(
    job: Job, items: Sequence[Item], *, first_sequence: int, linked: bool = False
) -> list[int]:
    """Create the sub-jobs that slice ``items``, point each item at its sub-job, and wake the
    dispatcher (staging.services.dispatch) once the surrounding transaction commits; returns
    their ids."""
    slicer = _Slicer(linked=linked, expected=len(items))
    slices = [slicer.place(item.size) for item in items]
    subjob_ids = _subjobs_create(job, slicer.totals, first_sequence=first_sequence)
    for item, number in zip(items, slices, strict=True):
        item.subjob_id = subjob_ids[number - 1]
    return subjob_ids


def _subjobs_create(
    job: Job, totals: Sequence[Sequence[int]], *, first_sequence: int, announce: bool = True
) -> list[int]:
    """Insert one sub-job per slice (``totals``: the files and bytes of each) in one statement,
    and (``announce``) wake the dispatcher once the surrounding transaction commits; returns
    their ids in order."""
    if rows_in_database():
        subjob_ids = subjobs_insert(job=job, totals=totals, first_sequence=first_sequence)
    else:
        subjobs = SubJob.objects.bulk_create(
            SubJob(job=job, sequence=sequence, files_total=files, bytes_total=size)
            for sequence, (files, size) in enumerate(totals, start=first_sequence)
        )
        subjob_ids = [s.pk for s in subjobs]
    if announce:
        _subjobs_announce(job)
    return subjob_ids


def _subjobs_announce(job: Job) -> None:
    """Once the transaction commits, a wake, and where a store is full, running sub-jobs asked
    from here to give way: every worker process may be busy with them, so a pass woken would
    wait for one to end."""
    transaction.on_commit(
        functools.partial(subjobs_submitted, store_id=job.store_id, task=job.task)
    )


def job_cancel(*, job: Job) -> Job:
    """Ask a job to stop: CANCELLING at once, queued sub-jobs cancelled and revoked, running ones
    stop at their next chunk boundary; CANCELLED once nothing runs. Cancelling a cancelling job
    again cancels whatever was handed back to the queue since; cancelling a cancelled one is
    harmless; cancelling a finished or failed one is a conflict."""
    if not transitions.job_request_cancel(job.pk):
        job.refresh_from_db(fields=["status"])
        if job.status == JobStatus.CANCELLED:
            return job
        if job.status != JobStatus.CANCELLING:
            raise ConflictError(f"job {job.uuid} is already {job.status} and cannot be cancelled")
    if jobs_cancel_queued_subjobs(job_id=job.pk):
        # The cancelled sub-jobs' slots are free now: a pass fills them at once, not at beat's.
        transaction.on_commit(dispatch_wake)
    transitions.job_settle(job.pk)
    job.refresh_from_db()
    return job


def jobs_cancel_queued_subjobs(*, job_id: int) -> int:
    """Cancel (and revoke) the queued sub-jobs of a job being cancelled; returns how many."""
    queued = SubJob.objects.filter(job_id=job_id, status=JobStatus.NOT_STARTED).values_list(
        "pk", "celery_task_id"
    )
    cancelled = 0
    for subjob_id, task_id in list(queued):
        if not transitions.subjob_cancel_queued(subjob_id):
            continue
        cancelled += 1
        if task_id:
            try:
                current_app.control.revoke(task_id)
            except Exception:
                logger.warning("could not revoke task %s; its worker will skip it", task_id)
    return cancelled


@transaction.atomic
def job_retry(*, job: Job) -> Job:
    """Run a terminal job's failed items again, as new sub-jobs; finished items stay as they
    are. Retrying a job that is still active, or that has no failed item, is a conflict. The
    retried files are pinned again (pins the sweeper already deleted are created anew)."""
    failed = list(Item.objects.filter(job=job, status=JobStatus.FAILED).order_by("pk"))
    if not failed:
        job.refresh_from_db(fields=["status"])
        reason = "is still active" if job.status in ACTIVE_STATUSES else "has no failed item"
        raise ConflictError(f"job {job.uuid} {reason}; there is nothing to retry")
    if not transitions.job_reopen(job.pk):
        job.refresh_from_db(fields=["status"])
        raise ConflictError(f"job {job.uuid} is {job.status}; only failed jobs can be retried")
    if job.deadline_at is not None:
        # The retried files get as long as the job had, from now: the old deadline would fail
        # them at once.
        Job.objects.filter(pk=job.pk).update(
            deadline_at=timezone.now() + (job.deadline_at - job.created_at)
        )
    last_sequence = job.subjobs.order_by("-sequence").values_list("sequence", flat=True).first()
    subjob_ids = _attach_subjobs(job, failed, first_sequence=(last_sequence or 0) + 1)
    for subjob_id in subjob_ids:
        transitions.items_reopen(
            item_ids=[i.pk for i in failed if i.subjob_id == subjob_id], subjob_id=subjob_id
        )
    if job.lifetime > timedelta(0):  # a job that pins its copies (job_create_staging)
        _pins_renew(job, [i.path for i in failed])
    job.refresh_from_db()
    return job


def _pins_renew(job: Job, paths: list[str]) -> None:
    """Pin ``paths`` for the job again, under the store lock the sweeper takes, so a copy the
    retry is about to find "already staged" cannot be swept meanwhile."""
    Store.objects.select_for_update().filter(pk=job.store_id).exists()
    expires_at = timezone.now() + job.lifetime
    Pin.objects.filter(job=job, path__in=paths).update(released_at=None, expires_at=expires_at)
    Pin.objects.bulk_create(
        (Pin(job=job, store_id=job.store_id, path=p, expires_at=expires_at) for p in paths),
        ignore_conflicts=True,
    )


def job_rollup(*, job_id: int) -> str | None:
    """Give a job its final status once every sub-job is terminal; returns it, or None while
    work remains (see staging.services.transitions.job_settle)."""
    return transitions.job_settle(job_id)
