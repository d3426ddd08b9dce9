"""What a worker does with one sub-job: take its lease, stage its items, report progress in
batches, and hand the result to the job roll-up."""

import contextlib
import errno
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.contrib.postgres.aggregates import JSONBAgg
from django.db import InterfaceError, OperationalError, connection, connections, transaction
from django.db.models import DateTimeField, Exists, OuterRef, Subquery
from django.db.models.functions import JSONObject
from django.utils import timezone

from staging.client_errors import error_for_client, item_error_text
from staging.dependencies import (
    DATABASE,
    database_wait_until_reachable,
    unreachable_dependency,
)
from staging.models import File, Item, Job, JobStatus, Store, SubJob
from staging.services import transitions
from staging.services.catalogue import catalogue_file_lacks_md5, catalogue_file_md5_record
from staging.services.deadlines import DEADLINE_EXCEEDED
from staging.services.dispatch import dispatch_after_end
from staging.services.preemption import GiveWay
from staging.services.publishing import subjobs_publish
from staging.services.staged_copies import lost_subjob_temporaries_remove
from staging.services.transitions import LeaseLost
from staging.services.webhooks import job_listened
from staging.storage import (
    DirectoryCache,
    DirectorySync,
    SizeMismatchError,
    StagingCancelled,
    UnsafePathError,
    pid_alive,
    stage_file,
    stage_linked,
)
from staging.tape_library import tape_read_for_copy

logger = logging.getLogger(__name__)

# (sub-job id, holder) of the sub-job this process is running, if any.
_lease_held: ContextVar[tuple[int, str] | None] = ContextVar("lease_held", default=None)

# Failures that no retry can mend: the item fails at once with the message.
PERMANENT_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR}


class ItemFailed(ValueError):
    """Raised by a task's per-item work when the item cannot succeed however often it is tried
    (a checksum mismatch, a target that no longer exists): the item fails at once with this
    message, without retries."""


def worker_identity(node: str) -> str:
    """Lease holder name: the Celery node plus the pool process, e.g. ``celery@host:1234``."""
    return f"{node}:{os.getpid()}"


def _holder_is_dead_sibling(holder: str, worker: str) -> bool:
    """True when the lease holder was a process of our own node that no longer exists (a pool
    process killed mid-task): its lease can be taken at once instead of after expiry."""
    holder_node, _, holder_pid = holder.rpartition(":")
    node = worker.rpartition(":")[0]
    if holder_node != node or not holder_pid.isdigit() or int(holder_pid) == os.getpid():
        return False
    return not pid_alive(int(holder_pid))


def subjob_claim(*, subjob_id: int, worker: str, task_id: str) -> SubJob | None:
    """Take the sub-job's lease if it is queued, or running under an expired lease. Returns None
    when someone else holds a live lease or the sub-job is over: a second delivery does nothing.
    A delivery that finds its job being cancelled (or the sub-job failed too often) settles the
    sub-job instead, so nothing is left queued for ever."""
    claimed = transitions.subjob_take(subjob_id=subjob_id, worker=worker, task_id=task_id)
    if not claimed:
        holder = (
            SubJob.objects.filter(pk=subjob_id, status=JobStatus.RUNNING)
            .values_list("worker", flat=True)
            .first()
        )
        if holder and _holder_is_dead_sibling(holder, worker):
            claimed = transitions.subjob_take(
                subjob_id=subjob_id, worker=worker, task_id=task_id, dead_holder=holder
            )
            if not claimed:
                # Its job is being cancelled: no run follows that would clear the temporary
                # the dead process left mid-copy.
                lost_subjob_temporaries_remove(subjob_id)
    if not claimed:
        with transaction.atomic():
            transitions.subjob_requeued(subjob_id)
        return None
    subjob = _claimed_subjob(subjob_id)
    if subjob.failures >= settings.STAGING["MAX_ATTEMPTS"]:
        # Taken over from a worker lost for the last allowed time: this run would be one more.
        transitions.subjob_hand_back(
            subjob_id=subjob_id, worker=worker, failure=subjob.error or "worker lost"
        )
        return None
    if subjob.job.status == JobStatus.NOT_STARTED:
        # As the claim read it: a job an earlier sub-job started needs no write of its row
        # (each of a many-sub-job job's claims would lock it for nothing).
        transitions.job_mark_running(subjob.job_id, listened=subjob.job_listened)
    return subjob


def _claimed_subjob(subjob_id: int) -> SubJob:
    """The claimed sub-job with its job, store and every item (their statuses too, so the
    worker knows at the end how all of them ended), in one query; ``claimed_items`` holds the
    items in order. Whether the catalogue has an MD5 of each item's file is read with them, and
    whether anything listens to the job's webhooks."""
    if connection.vendor == "postgresql":
        return _claimed_subjob_aggregated(subjob_id)
    items = list(
        Item.objects.filter(subjob_id=subjob_id)
        .select_related("subjob__job__store")
        .annotate(
            catalogue_lacks_md5=Exists(File.objects.filter(pk=OuterRef("file_id"), md5="")),
            job_listened=job_listened("subjob__job"),
        )
        .order_by("pk")
    )
    if items:
        subjob = items[0].subjob
        subjob.job_listened = items[0].job_listened
        for item in items:
            item.subjob = subjob
    else:  # a task without items (noop)
        subjob = (
            SubJob.objects.select_related("job__store")
            .annotate(job_listened=job_listened("job"))
            .get(pk=subjob_id)
        )
    subjob.claimed_items = items
    return subjob


_ITEM_FIELDS = Item._meta.concrete_fields
_ITEM_TIMES = {f.attname for f in _ITEM_FIELDS if isinstance(f, DateTimeField)}


def _claimed_subjob_aggregated(subjob_id: int) -> SubJob:
    """``_claimed_subjob`` on PostgreSQL: one row, the sub-job, its job and store each as a
    JSON object, and its items as one JSON array. Read as item rows joined to them, every row
    would carry (and build) the sub-job, job and store again: three model instances per file,
    most of a thousand-file claim's time. The query is built once per process
    (``_claimed_subjob_query``)."""
    sql, params, position = _claimed_subjob_query()
    params = list(params)
    params[position] = subjob_id
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        raise SubJob.DoesNotExist(f"sub-job {subjob_id} does not exist")
    subjob_row, job_row, store_row, listened, item_rows = (
        json.loads(value) if isinstance(value, str) else value for value in row
    )
    subjob = _instance_from_json(SubJob, subjob_row)
    subjob.job = _instance_from_json(Job, job_row)
    subjob.job.store = _instance_from_json(Store, store_row)
    subjob.job_listened = listened
    subjob.claimed_items = [_claimed_item(item, subjob) for item in item_rows or ()]
    return subjob


# Stands for the sub-job's id in the query compiled once: no sub-job has a negative id.
_SUBJOB_ID_PLACEHOLDER = -0x5EED_C1A1


@functools.cache
def _claimed_subjob_query() -> tuple[str, tuple, int]:
    """The SQL of ``_claimed_subjob_aggregated``, its parameters and the position of the
    sub-job's id among them. Building and compiling this query through the ORM took twenty
    times as long as PostgreSQL took to run it: once per process, not once per sub-job."""
    lacks_md5 = Exists(File.objects.filter(pk=OuterRef("file_id"), md5=""))
    rows = (
        Item.objects.filter(subjob_id=OuterRef("pk"))
        .order_by()
        .values("subjob_id")
        .annotate(
            rows=JSONBAgg(
                JSONObject(
                    **{f.attname: f.attname for f in _ITEM_FIELDS},
                    catalogue_lacks_md5=lacks_md5,
                ),
                order_by="id",
            )
        )
        .values("rows")
    )
    query = SubJob.objects.filter(pk=_SUBJOB_ID_PLACEHOLDER).values(
        subjob_row=_fields_as_json(SubJob, ""),
        job_row=_fields_as_json(Job, "job__"),
        store_row=_fields_as_json(Store, "job__store__"),
        listened=job_listened("job"),
        item_rows=Subquery(rows),
    )
    sql, params = query.query.sql_with_params()
    if params.count(_SUBJOB_ID_PLACEHOLDER) != 1:
        raise RuntimeError("the claim's read names the sub-job's id once")
    return sql, params, params.index(_SUBJOB_ID_PLACEHOLDER)


def _fields_as_json(model, prefix: str) -> JSONObject:
    return JSONObject(**{f.attname: f"{prefix}{f.attname}" for f in model._meta.concrete_fields})


def _instance_from_json(model, row: dict):
    """A model instance from its fields as JSON (``_fields_as_json``): each value made a Python
    one by its field (times, durations, UUIDs come as text)."""
    fields = model._meta.concrete_fields
    return model.from_db(
        model.objects.db, None, [field.to_python(row[field.attname]) for field in fields]
    )


def _claimed_item(row: dict, subjob: SubJob) -> Item:
    for name in _ITEM_TIMES:
        if row[name] is not None:
            row[name] = datetime.fromisoformat(row[name])
    item = Item.from_db(Item.objects.db, None, [row[f.attname] for f in _ITEM_FIELDS])
    item.catalogue_lacks_md5 = row["catalogue_lacks_md5"]
    item.subjob = subjob
    return item


class LeaseHeartbeat:
    """Renews a running sub-job's lease every HEARTBEAT_SECONDS from a thread of its own, so a
    long silent step (an fsync, a big listing, a slow recall) keeps the lease as well as a copy
    that reports progress does. It judges the lease lost when the renewal says another worker
    holds it, or when no renewal succeeded for LEASE_SECONDS (the database was out of reach, so
    the lease may have lapsed): from then on ``lost()`` is True and the worker writes nothing."""

    def __init__(self, *, subjob_id: int, worker: str, claimed_at: float):
        self.subjob_id, self.worker = subjob_id, worker
        # At least three beats per lease, whatever the settings say, so one slow beat is not
        # a lost lease.
        self.interval = min(
            settings.STAGING["HEARTBEAT_SECONDS"], settings.STAGING["LEASE_SECONDS"] / 3
        )
        # Judged lost half a beat before the database would let another worker take it.
        self.lease = settings.STAGING["LEASE_SECONDS"] - self.interval / 2
        # Counted from before the claim's write (monotonic), as a renewal from its start: the
        # database's expiry can only be later than ours.
        self.renewed_at = claimed_at
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{subjob_id}", daemon=True)

    def __enter__(self) -> "LeaseHeartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def renewed(self, started: float) -> None:
        """A renewal that began at ``started`` (monotonic) succeeded."""
        self.renewed_at = max(self.renewed_at, started)

    def lost(self) -> bool:
        if not self._lost.is_set() and time.monotonic() - self.renewed_at >= self.lease:
            self._lost.set()
        return self._lost.is_set()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval) and not self.lost():
                started = time.monotonic()
                try:
                    held = transitions.subjob_renew(subjob_id=self.subjob_id, worker=self.worker)
                except (OperationalError, InterfaceError) as exc:
                    logger.warning("sub-job %s: lease not renewed: %s", self.subjob_id, exc)
                    connections["default"].close()  # a fresh connection for the next beat
                    continue
                if not held:
                    logger.warning("sub-job %s: lease taken by another worker", self.subjob_id)
                    self._lost.set()
                    return
                self.renewed(started)
        finally:
            connections.close_all()  # this thread's own connections


# A batch is written once it holds this many outcomes, however short the interval.
BATCH_ITEMS = 1000


@dataclass
class ProgressReporter:
    """Collects per-item outcomes, attempts, bytes and pin stamps, and writes them at most once
    per interval (or BATCH_ITEMS outcomes) in one transaction: item outcomes in one statement,
    counters as increments, the lease renewed, the cancel flag re-read. Directories that copies
    were renamed into are fsynced once each per batch, before the batch is written: an item is
    FINISHED in the database only once its copy is durable under its name. Every write is
    fenced by the lease: once another worker holds the sub-job, LeaseLost."""

    subjob: SubJob
    worker: str
    heartbeat: LeaseHeartbeat | None = None
    interval: float = field(default_factory=lambda: settings.STAGING["PROGRESS_INTERVAL_SECONDS"])
    outcomes: transitions.ItemOutcomes = field(default_factory=transitions.ItemOutcomes)
    sync: DirectorySync = field(default_factory=DirectorySync)
    # The batch's directories, resolved and opened once each; closed at the first item
    # boundary after the batch was written.
    directories: DirectoryCache = field(default_factory=DirectoryCache)
    batches_since_open: int = 0
    pending_bytes: int = 0
    current_item: Item | None = None
    current_bytes: int = 0
    current_started: datetime | None = None
    cancelled: bool = False
    # Items cancelled on their own (the tape API's cancel), as the last batch's write read
    # them: not started from then on, so a cancel takes effect within one progress interval.
    cancelled_items: set[int] = field(default_factory=set)
    # Some item did not move as the worker believed (cancelled on its own): the end counts
    # the items in the database instead of trusting what the worker knows.
    diverged: bool = False
    last_flush: float = field(default_factory=time.monotonic)
    # How the items of earlier batches of this run ended (those writes are committed).
    ran: dict[int, str] = field(default_factory=dict)
    # The sub-job's items finished and failed, and the finished ones' bytes, once its end was
    # written from what the worker knows (``finish``); None otherwise.
    tally: dict[str, int] | None = None

    def lease_lost(self) -> bool:
        return self.heartbeat is not None and self.heartbeat.lost()

    def should_stop(self) -> bool:
        """Asked between chunks and right before a copy is renamed into place: a worker that
        lost its lease must put no file into place, and a file not in place by its job's
        deadline is not put there after it."""
        return self.cancelled or self.lease_lost() or self.deadline_passed()

    def deadline_passed(self) -> bool:
        deadline = self.subjob.job.deadline_at
        return deadline is not None and timezone.now() >= deadline

    def items_past_deadline(self, items: list[Item], *, in_hand: Item | None) -> None:
        """Fail ``items`` with "deadline exceeded" in the next batch write: the item in hand
        (its copy stopped; that attempt counts) and those never begun (no start time)."""
        if in_hand is not None:
            self.attempt_abandoned()
        for item in items:
            if item.pk in self.cancelled_items:
                continue
            began = item is in_hand
            self.outcomes.failed[item.pk] = (1 if began else 0, DEADLINE_EXCEEDED)
            if not began:
                self.outcomes.unstarted.add(item.pk)
        self.current_item, self.current_started = None, None
        logger.warning(
            "sub-job %s: deadline passed; %s items not staged", self.subjob.pk, len(items)
        )

    def _due(self) -> bool:
        return (
            time.monotonic() - self.last_flush >= self.interval or len(self.outcomes) >= BATCH_ITEMS
        )

    def add_bytes(self, count: int) -> None:
        self.pending_bytes += count
        self.current_bytes += count
        if self._due():
            self.flush()

    def item_started(self, item: Item) -> None:
        self.current_item, self.current_bytes = item, 0
        if self.current_started is None:
            self.current_started = timezone.now()

    def attempt_abandoned(self) -> None:
        """The bytes of an attempt that failed are not progress: the next attempt copies them
        again (or the item fails and never counts them)."""
        self.pending_bytes -= self.current_bytes
        self.current_bytes = 0

    def copy_staged(self, item: Item, copied: os.stat_result) -> None:
        """The staged copy of ``item`` holds the archive version ``copied`` describes: the pins
        on its path are stamped with it in the batch's write."""
        mtime = datetime.fromtimestamp(copied.st_mtime_ns / 1e9, tz=UTC)
        self.outcomes.stamps[item.path] = (mtime, copied.st_size)

    def item_finished(self, item: Item, attempts: int) -> None:
        self.outcomes.finished[item.pk] = attempts
        self._item_over()

    def item_failed(self, item: Item, attempts: int, message: str) -> None:
        self.outcomes.failed[item.pk] = (attempts, message)
        logger.warning("item %s (%s) failed: %s", item.pk, item.path, message)
        self._item_over()

    def _item_over(self) -> None:
        self.current_item, self.current_started = None, None
        if self._due():
            self.flush()
        if self.batches_since_open:
            # Between two items, never during one: a copy in hand uses the descriptors.
            self.directories.close()
            self.batches_since_open = 0

    def _rate(self) -> float:
        return max(self.pending_bytes, 0) / max(time.monotonic() - self.last_flush, 1e-3)

    def _batch_done(self, started: float) -> None:
        if self.heartbeat is not None:
            self.heartbeat.renewed(started)
        self.batches_since_open += 1
        self.ran.update(dict.fromkeys(self.outcomes.finished, JobStatus.FINISHED))
        self.ran.update(dict.fromkeys(self.outcomes.failed, JobStatus.FAILED))
        self.outcomes = transitions.ItemOutcomes()
        self.pending_bytes = 0
        self.last_flush = time.monotonic()

    def flush(self) -> None:
        if self.lease_lost():
            raise LeaseLost(f"sub-job {self.subjob.pk}: lease lost by {self.worker}")
        started = time.monotonic()
        # Durable first, recorded second: "ready" promises the bytes are in place.
        self.sync.flush()
        running = None
        if self.current_item is not None:
            running = (self.current_item.pk, self.current_bytes, self.current_started)
        moved, status, cancelled_items = transitions.subjob_progress(
            subjob_id=self.subjob.pk,
            job_id=self.subjob.job_id,
            worker=self.worker,
            outcomes=self.outcomes,
            bytes_done=self.pending_bytes,
            bytes_per_second=self._rate(),
            running=running,
        )
        self.diverged = self.diverged or moved != len(self.outcomes) or bool(cancelled_items)
        self.cancelled = status in (JobStatus.CANCELLING, JobStatus.CANCELLED)
        self.cancelled_items = cancelled_items
        self._batch_done(started)

    def finish(self) -> str | None:
        """Write the last batch with the sub-job's end and the job's roll-up in one
        transaction (its directories fsynced first); the sub-job's final status, or None when
        the lease was lost meanwhile."""
        if self.lease_lost():
            raise LeaseLost(f"sub-job {self.subjob.pk}: lease lost by {self.worker}")
        known = None if self.cancelled or self.diverged else self._counts()
        if known is not None:
            self.sync.flush()
            counts, job_counts, finished_bytes = known
            try:
                status = transitions.subjob_finish_known(
                    subjob_id=self.subjob.pk,
                    job_id=self.subjob.job_id,
                    worker=self.worker,
                    outcomes=self.outcomes,
                    counts=counts,
                    bytes_done=self.pending_bytes,
                    job_counts=job_counts,
                    lifetime=self.subjob.job.lifetime,
                    listened=getattr(self.subjob, "job_listened", None),
                )
            except transitions.OutcomesDisagree:
                pass  # nothing was written: the general way below
            else:
                self.tally = {
                    "finished": counts["finished"],
                    "failed": counts["failed"],
                    "bytes": finished_bytes,
                }
                return status
        self.flush()
        return transitions.subjob_finish(
            subjob_id=self.subjob.pk,
            job_id=self.subjob.job_id,
            worker=self.worker,
            cancelled=self.cancelled,
        )

    def _counts(self) -> tuple[dict, dict | None, int] | None:
        """How every item of the sub-job ended, from their statuses at the claim and the
        outcomes of this run; with the job's counts too when the sub-job holds all of the
        job's items, and the bytes of its finished items. None when an item is neither (the
        run stopped early)."""
        items = getattr(self.subjob, "claimed_items", None)
        if items is None:
            return None
        statuses = {item.pk: item.status for item in items}
        statuses.update(self.ran)
        statuses.update(dict.fromkeys(self.outcomes.finished, JobStatus.FINISHED))
        statuses.update(dict.fromkeys(self.outcomes.failed, JobStatus.FAILED))
        if any(status in transitions.ACTIVE_ITEM for status in statuses.values()):
            return None
        counts = {
            "total": len(statuses),
            "finished": sum(s == JobStatus.FINISHED for s in statuses.values()),
            "failed": sum(s == JobStatus.FAILED for s in statuses.values()),
            "cancelled": sum(s == JobStatus.CANCELLED for s in statuses.values()),
        }
        finished_bytes = sum(i.size for i in items if statuses[i.pk] == JobStatus.FINISHED)
        if not items or len(items) != self.subjob.job.files_total:
            return counts, None, finished_bytes
        return counts, {**counts, "bytes_done": finished_bytes}, finished_bytes


def item_result_record(*, item_id: int, result: dict) -> None:
    """Keep what a task found for one item (a checksum, pins released) for its result rows.
    Written by the item's work while the item runs, so a failed attempt's value is replaced by
    the next attempt's; fenced by the lease of the sub-job being run (LeaseLost once lost)."""
    held = _lease_held.get()
    with transaction.atomic():
        if held is not None:
            transitions.subjob_hold(subjob_id=held[0], worker=held[1])
        Item.objects.filter(pk=item_id).update(result=result)


def _is_permanent(exc: Exception) -> bool:
    if isinstance(exc, (UnsafePathError, SizeMismatchError, ItemFailed)):
        return True
    return isinstance(exc, OSError) and exc.errno in PERMANENT_ERRNOS


ItemWork = Callable[[Item, Store, "ProgressReporter"], None]


def stage_item(item: Item, store: Store, reporter: ProgressReporter) -> None:
    """The work of a staging task: a complete, verified copy of the item in the staging area.
    Where the catalogue has no MD5 for the file, the copy records the MD5 of what it read.
    A store with a simulated tape library reads through one of its drives first; another
    store's simulated latency is a flat delay per item."""
    if not tape_read_for_copy(item, store, worker=reporter.worker) and store.simulated_latency_ms:
        time.sleep(store.simulated_latency_ms / 1000)
    stage_file_copy(item, store, reporter)


def stage_file_copy(item: Item, store: Store, reporter: ProgressReporter) -> None:
    """The copy of ``stage_item``, once the file is readable."""
    record_md5 = None
    lacks_md5 = getattr(item, "catalogue_lacks_md5", None)  # read with the claimed items
    if lacks_md5 is None:
        lacks_md5 = catalogue_file_lacks_md5(file_id=item.file_id)
    if lacks_md5:
        # The copy then reads the file through this process and hashes it on the way: no
        # extra read of the archive (a tape recall on a posix-tape store), at the cost of the
        # kernel's faster copy, which files with a known MD5 keep.
        record_md5 = functools.partial(catalogue_file_md5_record, file_id=item.file_id)
    common = {
        "expected_size": item.size,
        "chunk_bytes": settings.STAGING["COPY_CHUNK_BYTES"],
        "on_progress": reporter.add_bytes,
        "should_stop": reporter.should_stop,
        "on_md5": record_md5,
        "on_staged": functools.partial(reporter.copy_staged, item),
        "sync": reporter.sync,
    }
    if store.hard_link:
        directories = reporter.directories
        stage_linked(directories, store.archive_root, store.staging_root, item.path, **common)
        return
    stage_file(
        reporter.directories.resolve(store.archive_root, item.path),
        reporter.directories.resolve(store.staging_root, item.path),
        cache=reporter.directories,
        **common,
        # A verifying job reads each copy under its final name right after it is made.
        defer_naming=not reporter.subjob.job.parameters.get("verify"),
    )


def item_run(item: Item, store: Store, reporter: ProgressReporter, work: ItemWork) -> None:
    """Do one item's work, retrying transient I/O errors with backoff; permanent ones (and the
    last attempt's) fail the item with a message."""
    max_attempts = settings.STAGING["MAX_ATTEMPTS"]
    for attempt in range(1, max_attempts + 1):
        reporter.item_started(item)
        try:
            work(item, store, reporter)
        except StagingCancelled:
            raise
        except (OSError, ValueError) as exc:
            reporter.attempt_abandoned()
            if _is_permanent(exc) or attempt == max_attempts:
                message = item_error_text(
                    exc, path=item.path, roots=(store.archive_root, store.staging_root)
                )
                reporter.item_failed(item, attempt, message)
                return
            backoff = min(0.5 * 2 ** (attempt - 1), 10)
            logger.info("item %s: transient error %s; retrying in %.1fs", item.pk, exc, backoff)
            time.sleep(backoff)
            continue
        reporter.item_finished(item, attempt)
        return


def subjob_run(
    *,
    subjob_id: int,
    worker: str,
    task_id: str,
    work: ItemWork = stage_item,
    work_for: Callable[[Job], ItemWork] | None = None,
    tally: dict | None = None,
) -> str | None:
    """Run one sub-job to its end, doing ``work`` for each of its items (or the work that
    ``work_for`` picks for the sub-job's job, e.g. by its catalogue task). A sub-job without
    items (a noop) just finishes. Returns its final status, or None when this delivery had
    nothing to do (another worker holds it, it is over, or its job was cancelled). ``tally``:
    filled with its items finished and failed and the finished ones' bytes, when the end
    was written from what the worker knew (``ProgressReporter.tally``)."""
    claimed_at = time.monotonic()
    subjob = subjob_claim(subjob_id=subjob_id, worker=worker, task_id=task_id)
    if subjob is None:
        return None
    with (
        LeaseHeartbeat(subjob_id=subjob_id, worker=worker, claimed_at=claimed_at) as heartbeat,
        _lease_context(subjob_id, worker),
    ):
        reporter = ProgressReporter(subjob=subjob, worker=worker, heartbeat=heartbeat)
        try:
            if work_for is not None:
                work = work_for(subjob.job)
            if _run_items(subjob, reporter, work, GiveWay(subjob.job)):
                final = _give_way(subjob_id, worker, reporter)
            else:
                # Raises LeaseLost when the work stopped because the lease was lost.
                final = reporter.finish()
                if tally is not None and reporter.tally is not None:
                    tally.update(reporter.tally)
        except LeaseLost:
            subjob_lease_given_up(subjob_id, worker)
            return None
        except BaseException as exc:
            subjob_interrupted(subjob_id, worker, reporter, exc)
            raise
        finally:
            reporter.sync.close()
            reporter.directories.close()
    dispatch_after_end()  # its slot is free: the next waiting sub-job may go
    return final


@contextlib.contextmanager
def _lease_context(subjob_id: int, worker: str):
    """The lease the item work of this process runs under, for writes made through helpers that
    are not handed the reporter (item_result_record)."""
    token = _lease_held.set((subjob_id, worker))
    try:
        yield
    finally:
        _lease_held.reset(token)


def _run_items(subjob: SubJob, reporter: ProgressReporter, work: ItemWork, give_way) -> bool:
    """Run the items not yet ended; True when the run stopped between two of them to give
    way to another owner's waiting work (items are left, and its owner was asked)."""
    pending = [item for item in subjob.claimed_items if item.status in transitions.ACTIVE_ITEM]
    # No progress write before the first item: the claim already refused cancelled jobs.
    stopped_at, in_hand = None, None
    for position, item in enumerate(pending):
        if reporter.should_stop():
            stopped_at = position
            break
        if item.pk in reporter.cancelled_items:
            continue
        if give_way.asked(files_done=position):
            return True
        try:
            item_run(item, subjob.job.store, reporter, work)
        except StagingCancelled:
            stopped_at, in_hand = position, item
            break
    if stopped_at is None or reporter.cancelled or reporter.lease_lost():
        return False
    # Stopped for its job's deadline: the files not staged by then fail.
    if reporter.deadline_passed():
        reporter.items_past_deadline(pending[stopped_at:], in_hand=in_hand)
    return False


def _give_way(subjob_id: int, worker: str, reporter: ProgressReporter) -> str | None:
    """Write the batch, then hand the rest of the sub-job back undispatched: the pass after
    its end gives the slot to the owner below its share. None when the lease was lost."""
    reporter.flush()  # LeaseLost when it was
    if not transitions.subjob_give_way(subjob_id=subjob_id, worker=worker):
        raise LeaseLost(f"sub-job {subjob_id}: lease lost by {worker} as it gave way")
    logger.info("sub-job %s gave way at a file boundary", subjob_id)
    return JobStatus.NOT_STARTED


def subjob_lease_given_up(subjob_id: int, worker: str) -> None:
    """After the lease was lost, or could not be renewed for a whole lease period: if the
    database still names this worker the holder (nobody took over yet), hand the sub-job back
    so another worker resumes it now rather than after the reaper; otherwise, and when the
    database is out of reach, write nothing."""
    logger.warning("sub-job %s: lease lost by %s; writing nothing more", subjob_id, worker)
    with contextlib.suppress(OperationalError, InterfaceError):
        subjob_hand_back(subjob_id=subjob_id, worker=worker, publish=True)


def subjob_interrupted(subjob_id: int, worker: str, reporter: ProgressReporter, exc: BaseException):
    """Hand a sub-job back after its run was interrupted. A pool process told to stop (warm
    shutdown: the pool's SIGTERM handler raises SystemExit) puts it straight back on the queue
    for another worker, and that is no failure; a lost database connection is retried by Celery
    and is no failure either; anything else is one (the MAX_ATTEMPTS-th fails the sub-job with
    that error), and the reconciler republishes it."""
    logger.warning("sub-job %s interrupted by %r; handing it back", subjob_id, exc)
    # A database outage is no fault of the work: wait for the database, so the progress and
    # the hand-back below can be written, and put the sub-job straight back on the queue.
    # (unreachable_dependency already judges OperationalError and InterfaceError.)
    database_lost = unreachable_dependency(exc) == DATABASE
    if database_lost:
        database_wait_until_reachable()
    # Keep what is already done: the next attempt starts after the last finished file.
    with contextlib.suppress(Exception):
        reporter.flush()
    transient = database_lost or isinstance(exc, (SystemExit, KeyboardInterrupt))
    store = reporter.subjob.job.store
    # The sub-job's error becomes the job's when it fails for good: no server path in it.
    failure = error_for_client(exc, roots=(store.archive_root, store.staging_root))
    with contextlib.suppress(OperationalError, InterfaceError):
        subjob_hand_back(
            subjob_id=subjob_id,
            worker=worker,
            publish=isinstance(exc, SystemExit) or database_lost,
            failure="" if transient else f"{type(exc).__name__}: {failure}",
        )


def subjob_hand_back(*, subjob_id: int, worker: str, publish: bool, failure: str = "") -> bool:
    """Give a running sub-job back to the queue at once (its finished items stay finished)
    rather than leaving it to the reaper when the lease expires."""
    released = transitions.subjob_hand_back(subjob_id=subjob_id, worker=worker, failure=failure)
    if released:
        logger.info("sub-job %s handed back by %s", subjob_id, worker)
        still_queued = SubJob.objects.filter(pk=subjob_id, status=JobStatus.NOT_STARTED)
        if publish and still_queued.exists():
            subjobs_publish(subjob_ids=[subjob_id])
    return released
