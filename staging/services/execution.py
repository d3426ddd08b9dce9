"""What a worker does with one sub-job: take its lease, stage its items, report progress in
batches, and hand the result to the job roll-up."""

import contextlib
import errno
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from staging.dependencies import (
    DATABASE,
    database_wait_until_reachable,
    unreachable_dependency,
)
from staging.models import Item, Job, JobStatus, Store, SubJob
from staging.services.jobs import job_rollup, subjobs_publish
from staging.storage import (
    SizeMismatchError,
    StagingCancelled,
    UnsafePathError,
    pid_alive,
    resolve_under,
    stage_file,
)

logger = logging.getLogger(__name__)

# Failures that no retry can mend: the item fails at once with the message.
PERMANENT_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR}


class LeaseLost(Exception):
    """Another worker owns this sub-job now (our lease expired and the reaper handed it on)."""


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


def _lease_deadline():
    return timezone.now() + timedelta(seconds=settings.STAGING["LEASE_SECONDS"])


def subjob_claim(*, subjob_id: int, worker: str, task_id: str) -> SubJob | None:
    """Take the sub-job's lease if it is queued, or running under an expired lease. Returns None
    when someone else holds a live lease or the sub-job is over: a second delivery does nothing."""
    now = timezone.now()
    claimable = Q(status=JobStatus.NOT_STARTED) | Q(
        status=JobStatus.RUNNING, lease_expires_at__lt=now
    )
    claimed = _claim(subjob_id, claimable, worker=worker, task_id=task_id, now=now)
    if not claimed:
        holder = (
            SubJob.objects.filter(pk=subjob_id, status=JobStatus.RUNNING)
            .values_list("worker", flat=True)
            .first()
        )
        if holder and _holder_is_dead_sibling(holder, worker):
            claimable = Q(status=JobStatus.RUNNING, worker=holder)
            claimed = _claim(subjob_id, claimable, worker=worker, task_id=task_id, now=now)
    if not claimed:
        return None
    subjob = SubJob.objects.select_related("job", "job__store").get(pk=subjob_id)
    Job.objects.filter(pk=subjob.job_id, status=JobStatus.NOT_STARTED).update(
        status=JobStatus.RUNNING, started_at=now, updated_at=now
    )
    return subjob


def _claim(subjob_id: int, claimable: Q, *, worker: str, task_id: str, now) -> int:
    return (
        SubJob.objects.filter(claimable, pk=subjob_id)
        # A subquery, not a join: with a join Django writes "WHERE id IN (SELECT ... JOIN ...)",
        # and PostgreSQL does not re-check a status inside that subquery when a concurrent claim
        # commits first, so two deliveries could both take the lease.
        .exclude(
            job_id__in=Job.objects.filter(
                status__in=[JobStatus.CANCELLING, JobStatus.CANCELLED]
            ).values("pk")
        )
        .update(
            status=JobStatus.RUNNING,
            worker=worker,
            celery_task_id=task_id,
            lease_expires_at=_lease_deadline(),
            attempts=F("attempts") + 1,
            started_at=Coalesce(F("started_at"), now),
        )
    )


@dataclass
class ProgressReporter:
    """Collects per-item outcomes and bytes, and writes them at most once per interval: item
    statuses in bulk, counters as increments, the lease renewed, the cancel flag re-read."""

    subjob: SubJob
    worker: str
    interval: float = field(default_factory=lambda: settings.STAGING["PROGRESS_INTERVAL_SECONDS"])
    finished: list[int] = field(default_factory=list)
    pending_bytes: int = 0
    current_item: Item | None = None
    current_bytes: int = 0
    cancelled: bool = False
    last_flush: float = field(default_factory=time.monotonic)

    def should_stop(self) -> bool:
        return self.cancelled

    def add_bytes(self, count: int) -> None:
        self.pending_bytes += count
        self.current_bytes += count
        if time.monotonic() - self.last_flush >= self.interval:
            self.flush()

    def item_started(self, item: Item) -> None:
        self.current_item, self.current_bytes = item, 0

    def item_finished(self, item: Item) -> None:
        self.finished.append(item.pk)
        self.current_item = None
        if time.monotonic() - self.last_flush >= self.interval:
            self.flush()

    def flush(self) -> None:
        now = timezone.now()
        elapsed = max(time.monotonic() - self.last_flush, 1e-3)
        with transaction.atomic():
            renewed = SubJob.objects.filter(
                pk=self.subjob.pk, status=JobStatus.RUNNING, worker=self.worker
            ).update(
                lease_expires_at=_lease_deadline(),
                files_done=F("files_done") + len(self.finished),
                bytes_done=F("bytes_done") + self.pending_bytes,
                bytes_per_second=self.pending_bytes / elapsed,
            )
            if not renewed:
                raise LeaseLost(f"sub-job {self.subjob.pk} is no longer leased to {self.worker}")
            done = 0
            if self.finished:
                done = Item.objects.filter(
                    pk__in=self.finished, status__in=[JobStatus.NOT_STARTED, JobStatus.RUNNING]
                ).update(status=JobStatus.FINISHED, bytes_done=F("size"), finished_at=now)
            if self.current_item is not None:
                # Filtered on status so a file cancelled meanwhile stays cancelled.
                Item.objects.filter(
                    pk=self.current_item.pk,
                    status__in=[JobStatus.NOT_STARTED, JobStatus.RUNNING],
                ).update(
                    status=JobStatus.RUNNING,
                    bytes_done=self.current_bytes,
                    started_at=Coalesce(F("started_at"), now),
                )
            Job.objects.filter(pk=self.subjob.job_id).update(
                files_done=F("files_done") + done,
                bytes_done=F("bytes_done") + self.pending_bytes,
                updated_at=now,
            )
            status = Job.objects.filter(pk=self.subjob.job_id).values_list("status", flat=True)
            self.cancelled = status.first() in (JobStatus.CANCELLING, JobStatus.CANCELLED)
        self.finished.clear()
        self.pending_bytes = 0
        self.last_flush = time.monotonic()


def item_result_record(*, item_id: int, result: dict) -> None:
    """Keep what a task found for one item (a checksum, pins released) for its result rows.
    Written by the item's work while the item runs, so a failed attempt's value is replaced by
    the next attempt's."""
    Item.objects.filter(pk=item_id).update(result=result)


def _item_failed(item: Item, message: str) -> None:
    Item.objects.filter(pk=item.pk, status__in=[JobStatus.NOT_STARTED, JobStatus.RUNNING]).update(
        status=JobStatus.FAILED, error=message[:2000], finished_at=timezone.now()
    )
    logger.warning("item %s (%s) failed: %s", item.pk, item.path, message)


def _is_permanent(exc: Exception) -> bool:
    if isinstance(exc, (UnsafePathError, SizeMismatchError, ItemFailed)):
        return True
    return isinstance(exc, OSError) and exc.errno in PERMANENT_ERRNOS


ItemWork = Callable[[Item, Store, "ProgressReporter"], None]


def stage_item(item: Item, store: Store, reporter: ProgressReporter) -> None:
    """The work of a staging task: a complete, verified copy of the item in the staging area."""
    if store.simulated_latency_ms:
        time.sleep(store.simulated_latency_ms / 1000)
    stage_file(
        resolve_under(store.archive_root, item.path),
        resolve_under(store.staging_root, item.path),
        expected_size=item.size,
        hard_link=store.hard_link,
        chunk_bytes=settings.STAGING["COPY_CHUNK_BYTES"],
        on_progress=reporter.add_bytes,
        should_stop=reporter.should_stop,
    )


def _run_item(item: Item, store: Store, reporter: ProgressReporter, work: ItemWork) -> None:
    """Do one item's work, retrying transient I/O errors with backoff; permanent ones (and the
    last attempt's) fail the item with a message."""
    max_attempts = settings.STAGING["MAX_ATTEMPTS"]
    for attempt in range(1, max_attempts + 1):
        if not Item.objects.filter(
            pk=item.pk, status__in=[JobStatus.NOT_STARTED, JobStatus.RUNNING]
        ).update(attempts=F("attempts") + 1):
            return  # cancelled on its own (WLCG tape cancel) since the sub-job read its items
        reporter.item_started(item)
        try:
            work(item, store, reporter)
        except StagingCancelled:
            raise
        except (OSError, ValueError) as exc:
            if _is_permanent(exc) or attempt == max_attempts:
                reporter.current_item = None
                _item_failed(item, _describe(exc))
                return
            backoff = min(0.5 * 2 ** (attempt - 1), 10)
            logger.info("item %s: transient error %s; retrying in %.1fs", item.pk, exc, backoff)
            time.sleep(backoff)
            continue
        reporter.item_finished(item)
        return


def _describe(exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"source file not found: {exc.filename}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)


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
    subjob = subjob_claim(subjob_id=subjob_id, worker=worker, task_id=task_id)
    if subjob is None:
        return None
    if work_for is not None:
        work = work_for(subjob.job)
    store = subjob.job.store
    reporter = ProgressReporter(subjob=subjob, worker=worker)
    pending = Item.objects.filter(
        subjob=subjob, status__in=[JobStatus.NOT_STARTED, JobStatus.RUNNING]
    ).order_by("pk")
    try:
        # No progress write before the first item: the claim already refused cancelled jobs.
        for item in pending:
            if reporter.should_stop():
                break
            try:
                _run_item(item, store, reporter, work)
            except StagingCancelled:
                break
        reporter.flush()
    except LeaseLost:
        logger.warning("sub-job %s: lease lost, leaving it to its new owner", subjob_id)
        return None
    except BaseException as exc:
        logger.warning("sub-job %s interrupted by %r; handing it back", subjob_id, exc)
        # A database outage is no fault of the work: wait for the database, so the progress and
        # the hand-back below can be written, and put the sub-job straight back on the queue.
        database_lost = unreachable_dependency(exc) == DATABASE
        if database_lost:
            database_wait_until_reachable()
        # Keep what is already done: the next attempt starts after the last finished file.
        with contextlib.suppress(Exception):
            reporter.flush()
        # A pool process told to stop (warm shutdown: the pool's SIGTERM handler raises
        # SystemExit) puts the sub-job straight back on the queue for another worker; other
        # errors come back through Celery's retry, or the reconciler.
        subjob_hand_back(
            subjob_id=subjob_id,
            worker=worker,
            publish=isinstance(exc, SystemExit) or database_lost,
        )
        raise
    return subjob_finish(subjob=subjob, worker=worker, cancelled=reporter.cancelled)


def subjob_hand_back(*, subjob_id: int, worker: str, publish: bool) -> bool:
    """Give a running sub-job back to the queue at once (its finished items stay finished)
    rather than leaving it to the reaper when the lease expires."""
    with transaction.atomic():
        released = SubJob.objects.filter(
            pk=subjob_id, status=JobStatus.RUNNING, worker=worker
        ).update(status=JobStatus.NOT_STARTED, worker="", lease_expires_at=None, bytes_per_second=0)
        if released:
            Item.objects.filter(subjob_id=subjob_id, status=JobStatus.RUNNING).update(
                status=JobStatus.NOT_STARTED, bytes_done=0
            )
    if released:
        logger.info("sub-job %s handed back by %s", subjob_id, worker)
        if publish:
            subjobs_publish(subjob_ids=[subjob_id])
    return bool(released)


def subjob_finish(*, subjob: SubJob, worker: str, cancelled: bool) -> str | None:
    now = timezone.now()
    if cancelled:
        Item.objects.filter(
            subjob=subjob, status__in=[JobStatus.NOT_STARTED, JobStatus.RUNNING]
        ).update(status=JobStatus.CANCELLED, finished_at=now)
    counts = Item.objects.filter(subjob=subjob).aggregate(
        total=Count("pk"),
        finished=Count("pk", filter=Q(status=JobStatus.FINISHED)),
        failed=Count("pk", filter=Q(status=JobStatus.FAILED)),
    )
    if cancelled:
        final = JobStatus.CANCELLED
    elif counts["finished"] == counts["total"]:
        final = JobStatus.FINISHED
    elif counts["finished"]:
        final = JobStatus.PARTIALLY_FAILED
    else:
        final = JobStatus.FAILED
    moved = SubJob.objects.filter(pk=subjob.pk, status=JobStatus.RUNNING, worker=worker).update(
        status=final,
        finished_at=now,
        lease_expires_at=None,
        bytes_per_second=0,
        files_done=counts["finished"],
        bytes_done=F("bytes_total") if final == JobStatus.FINISHED else F("bytes_done"),
    )
    if not moved:
        return None
    job_rollup(job_id=subjob.job_id)
    return final
