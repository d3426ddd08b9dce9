"""What a worker does with one sub-job: take its lease, stage its items, report progress in
batches, and hand the result to the job roll-up."""

import contextlib
import errno
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

from django.conf import settings
from django.db import InterfaceError, OperationalError, connections, transaction
from django.db.models import F
from django.utils import timezone

from staging.client_errors import error_for_client, item_error_text
from staging.dependencies import (
    DATABASE,
    database_wait_until_reachable,
    unreachable_dependency,
)
from staging.models import Item, Job, JobStatus, Store, SubJob
from staging.services import transitions
from staging.services.catalogue import catalogue_file_lacks_md5, catalogue_file_md5_record
from staging.services.dispatch import dispatch_wake
from staging.services.jobs import subjobs_publish
from staging.services.transitions import LeaseLost
from staging.storage import (
    SizeMismatchError,
    StagingCancelled,
    UnsafePathError,
    pid_alive,
    resolve_under,
    stage_file,
)

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
        with transaction.atomic():
            transitions.subjob_requeued(subjob_id)
        return None
    subjob = SubJob.objects.select_related("job", "job__store").get(pk=subjob_id)
    if subjob.failures >= settings.STAGING["MAX_ATTEMPTS"]:
        # Taken over from a worker lost for the last allowed time: this run would be one more.
        transitions.subjob_hand_back(
            subjob_id=subjob_id, worker=worker, failure=subjob.error or "worker lost"
        )
        return None
    transitions.job_mark_running(subjob.job_id)
    return subjob


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


@dataclass
class ProgressReporter:
    """Collects per-item outcomes and bytes, and writes them at most once per interval: item
    statuses in bulk, counters as increments, the lease renewed, the cancel flag re-read. Every
    write is fenced by the lease: once another worker holds the sub-job, LeaseLost."""

    subjob: SubJob
    worker: str
    heartbeat: LeaseHeartbeat | None = None
    interval: float = field(default_factory=lambda: settings.STAGING["PROGRESS_INTERVAL_SECONDS"])
    finished: list[int] = field(default_factory=list)
    pending_bytes: int = 0
    current_item: Item | None = None
    current_bytes: int = 0
    cancelled: bool = False
    last_flush: float = field(default_factory=time.monotonic)

    def lease_lost(self) -> bool:
        return self.heartbeat is not None and self.heartbeat.lost()

    def should_stop(self) -> bool:
        """Asked between chunks and right before a copy is renamed into place: a worker that
        lost its lease must put no file into place."""
        return self.cancelled or self.lease_lost()

    def add_bytes(self, count: int) -> None:
        self.pending_bytes += count
        self.current_bytes += count
        if time.monotonic() - self.last_flush >= self.interval:
            self.flush()

    def item_started(self, item: Item) -> None:
        self.current_item, self.current_bytes = item, 0

    def attempt_abandoned(self) -> None:
        """The bytes of an attempt that failed are not progress: the next attempt copies them
        again (or the item fails and never counts them)."""
        self.pending_bytes -= self.current_bytes
        self.current_bytes = 0

    def item_finished(self, item: Item) -> None:
        self.finished.append(item.pk)
        self.current_item = None
        if time.monotonic() - self.last_flush >= self.interval:
            self.flush()

    def flush(self) -> None:
        if self.lease_lost():
            raise LeaseLost(f"sub-job {self.subjob.pk}: lease lost by {self.worker}")
        started = time.monotonic()
        elapsed = max(started - self.last_flush, 1e-3)
        with transaction.atomic():
            renewed = SubJob.objects.filter(
                pk=self.subjob.pk, status=JobStatus.RUNNING, worker=self.worker
            ).update(
                lease_expires_at=transitions.lease_deadline(),
                files_done=F("files_done") + len(self.finished),
                bytes_done=F("bytes_done") + self.pending_bytes,
                bytes_per_second=max(self.pending_bytes, 0) / elapsed,
            )
            if not renewed:
                raise LeaseLost(f"sub-job {self.subjob.pk} is no longer leased to {self.worker}")
            # The row lock the UPDATE above took fences the writes below.
            done = transitions.items_finish(self.finished) if self.finished else 0
            if self.current_item is not None:
                transitions.item_mark_running(
                    item_id=self.current_item.pk, bytes_done=self.current_bytes
                )
            Job.objects.filter(pk=self.subjob.job_id).update(
                files_done=F("files_done") + done,
                bytes_done=F("bytes_done") + self.pending_bytes,
                updated_at=timezone.now(),
            )
            status = Job.objects.filter(pk=self.subjob.job_id).values_list("status", flat=True)
            self.cancelled = status.first() in (JobStatus.CANCELLING, JobStatus.CANCELLED)
        if self.heartbeat is not None:
            self.heartbeat.renewed(started)
        self.finished.clear()
        self.pending_bytes = 0
        self.last_flush = time.monotonic()


def item_result_record(*, item_id: int, result: dict) -> None:
    """Keep what a task found for one item (a checksum, pins released) for its result rows.
    Written by the item's work while the item runs, so a failed attempt's value is replaced by
    the next attempt's; fenced by the lease of the sub-job being run (LeaseLost once lost)."""
    held = _lease_held.get()
    with transaction.atomic():
        if held is not None:
            transitions.subjob_hold(subjob_id=held[0], worker=held[1])
        Item.objects.filter(pk=item_id).update(result=result)


def _item_failed(item: Item, message: str, reporter: ProgressReporter) -> None:
    with transaction.atomic():
        transitions.subjob_hold(subjob_id=reporter.subjob.pk, worker=reporter.worker)
        transitions.item_fail(item_id=item.pk, error=message)
    logger.warning("item %s (%s) failed: %s", item.pk, item.path, message)


def _is_permanent(exc: Exception) -> bool:
    if isinstance(exc, (UnsafePathError, SizeMismatchError, ItemFailed)):
        return True
    return isinstance(exc, OSError) and exc.errno in PERMANENT_ERRNOS


ItemWork = Callable[[Item, Store, "ProgressReporter"], None]


def stage_item(item: Item, store: Store, reporter: ProgressReporter) -> None:
    """The work of a staging task: a complete, verified copy of the item in the staging area.
    Where the catalogue has no MD5 for the file, the copy records the MD5 of what it read."""
    if store.simulated_latency_ms:
        time.sleep(store.simulated_latency_ms / 1000)
    record_md5 = None
    if catalogue_file_lacks_md5(file_id=item.file_id):
        # The copy then reads the file through this process and hashes it on the way: no
        # extra read of the archive (a tape recall on a posix-tape store), at the cost of the
        # kernel's faster copy, which files with a known MD5 keep.
        record_md5 = functools.partial(catalogue_file_md5_record, file_id=item.file_id)
    stage_file(
        resolve_under(store.archive_root, item.path),
        resolve_under(store.staging_root, item.path),
        expected_size=item.size,
        hard_link=store.hard_link,
        chunk_bytes=settings.STAGING["COPY_CHUNK_BYTES"],
        on_progress=reporter.add_bytes,
        should_stop=reporter.should_stop,
        on_md5=record_md5,
    )


def _run_item(item: Item, store: Store, reporter: ProgressReporter, work: ItemWork) -> None:
    """Do one item's work, retrying transient I/O errors with backoff; permanent ones (and the
    last attempt's) fail the item with a message."""
    max_attempts = settings.STAGING["MAX_ATTEMPTS"]
    for attempt in range(1, max_attempts + 1):
        if not transitions.item_begin_attempt(
            item_id=item.pk, subjob_id=reporter.subjob.pk, worker=reporter.worker
        ):
            return  # cancelled on its own (WLCG tape cancel) since the sub-job read it
        reporter.item_started(item)
        try:
            work(item, store, reporter)
        except StagingCancelled:
            raise
        except (OSError, ValueError) as exc:
            reporter.attempt_abandoned()
            if _is_permanent(exc) or attempt == max_attempts:
                reporter.current_item = None
                message = item_error_text(
                    exc, path=item.path, roots=(store.archive_root, store.staging_root)
                )
                _item_failed(item, message, reporter)
                return
            backoff = min(0.5 * 2 ** (attempt - 1), 10)
            logger.info("item %s: transient error %s; retrying in %.1fs", item.pk, exc, backoff)
            time.sleep(backoff)
            continue
        reporter.item_finished(item)
        return


def subjob_run(
    *,
    subjob_id: int,
    worker: str,
    task_id: str,
    work: ItemWork = stage_item,
    work_for: Callable[[Job], ItemWork] | None = None,
) -> str | None:
    """Run one sub-job to its end, doing ``work`` for each of its items (or the work that
    ``work_for`` picks for the sub-job's job, e.g. by its catalogue task). A sub-job without
    items (a noop) just finishes. Returns its final status, or None when this delivery had
    nothing to do (another worker holds it, it is over, or its job was cancelled)."""
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
            _run_items(subjob, reporter, work)
            # Raises LeaseLost when the work stopped because the lease was lost (should_stop).
            reporter.flush()
        except LeaseLost:
            _lease_given_up(subjob_id, worker)
            return None
        except BaseException as exc:
            _interrupted(subjob_id, worker, reporter, exc)
            raise
        final = transitions.subjob_finish(
            subjob_id=subjob_id, job_id=subjob.job_id, worker=worker, cancelled=reporter.cancelled
        )
    dispatch_wake()  # its slot is free: the next waiting sub-job may go
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


def _run_items(subjob: SubJob, reporter: ProgressReporter, work: ItemWork) -> None:
    pending = Item.objects.filter(
        subjob=subjob, status__in=[JobStatus.NOT_STARTED, JobStatus.RUNNING]
    ).order_by("pk")
    # No progress write before the first item: the claim already refused cancelled jobs.
    for item in pending:
        if reporter.should_stop():
            break
        try:
            _run_item(item, subjob.job.store, reporter, work)
        except StagingCancelled:
            break


def _lease_given_up(subjob_id: int, worker: str) -> None:
    """After the lease was lost, or could not be renewed for a whole lease period: if the
    database still names this worker the holder (nobody took over yet), hand the sub-job back
    so another worker resumes it now rather than after the reaper; otherwise, and when the
    database is out of reach, write nothing."""
    logger.warning("sub-job %s: lease lost by %s; writing nothing more", subjob_id, worker)
    with contextlib.suppress(OperationalError, InterfaceError):
        subjob_hand_back(subjob_id=subjob_id, worker=worker, publish=True)


def _interrupted(subjob_id: int, worker: str, reporter: ProgressReporter, exc: BaseException):
    """Hand a sub-job back after its run was interrupted. A pool process told to stop (warm
    shutdown: the pool's SIGTERM handler raises SystemExit) puts it straight back on the queue
    for another worker, and that is no failure; a lost database connection is retried by Celery
    and is no failure either; anything else is one (the MAX_ATTEMPTS-th fails the sub-job with
    that error), and the reconciler republishes it."""
    logger.warning("sub-job %s interrupted by %r; handing it back", subjob_id, exc)
    # A database outage is no fault of the work: wait for the database, so the progress and
    # the hand-back below can be written, and put the sub-job straight back on the queue.
    database_lost = unreachable_dependency(exc) == DATABASE
    if database_lost:
        database_wait_until_reachable()
    # Keep what is already done: the next attempt starts after the last finished file.
    with contextlib.suppress(Exception):
        reporter.flush()
    transient = database_lost or isinstance(
        exc, (SystemExit, KeyboardInterrupt, OperationalError, InterfaceError)
    )
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
