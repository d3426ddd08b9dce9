"""Job lifecycle writes: create, dispatch, cancel, roll up. Every status change is a
compare-and-set (see the state machine in staging.models)."""

import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Case, Count, Q, Sum, Value, When
from django.utils import timezone

from staging.errors import ConflictError, ServiceError
from staging.models import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    File,
    Item,
    Job,
    JobStatus,
    Pin,
    Store,
    SubJob,
)
from staging.services.accounts import account_work_admit

logger = logging.getLogger(__name__)

STAGE_SUBJOB_TASK = "tasks.staging.stage_subjob"
STAGING_QUEUE = "staging"
PUBLISH_BATCH = 500


def _split_into_subjobs(sizes: Sequence[int]) -> list[list[int]]:
    """Group item positions into slices bounded by file count and bytes (a file larger than the
    byte bound gets a slice of its own)."""
    max_files = settings.STAGING["SUBJOB_MAX_FILES"]
    max_bytes = settings.STAGING["SUBJOB_MAX_BYTES"]
    slices: list[list[int]] = []
    current: list[int] = []
    current_bytes = 0
    for position, size in enumerate(sizes):
        if current and (len(current) >= max_files or current_bytes + size > max_bytes):
            slices.append(current)
            current, current_bytes = [], 0
        current.append(position)
        current_bytes += size
    if current:
        slices.append(current)
    return slices


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
    publish its sub-jobs once the transaction commits."""
    if not files:
        raise ServiceError("a staging request needs at least one file", field="ids")
    if any(f.store_id != store.pk for f in files):
        raise ServiceError("all files of one request must belong to the same store", field="ids")
    account_work_admit(owner=owner, files=len(files), size=sum(f.size for f in files), task=task)
    lifetime = lifetime or settings.STAGING["DEFAULT_LIFETIME"]
    # The sweeper holds this lock while it deletes unpinned copies (see staged_copies_sweep).
    Store.objects.select_for_update().filter(pk=store.pk).exists()
    now = timezone.now()
    job = Job.objects.create(
        task=task,
        store=store,
        owner=owner,
        source=source,
        parameters=parameters or {},
        lifetime=lifetime,
        idempotency_key=idempotency_key,
        files_total=len(files),
        bytes_total=sum(f.size for f in files),
    )
    items = [Item(job=job, file=f, path=f.path, size=f.size) for f in files]
    _attach_subjobs(job, items, first_sequence=1)
    Item.objects.bulk_create(items, batch_size=1000)
    Pin.objects.bulk_create(
        (Pin(job=job, store=store, path=f.path, expires_at=now + lifetime) for f in files),
        batch_size=1000,
        ignore_conflicts=True,
    )
    return job


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
    items (unsaved ``Item``s with path, size and file) sliced into sub-jobs, published once the
    transaction commits. A job without items gets one empty sub-job, so a worker still runs it
    and the roll-up still ends it. Staging jobs, which pin their copies, use
    ``job_create_staging``."""
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
        Item.objects.bulk_create(items, batch_size=1000)
    else:
        subjob = SubJob.objects.create(job=job, sequence=1)
        transaction.on_commit(lambda: subjobs_publish(subjob_ids=[subjob.pk]))
    return job


def _attach_subjobs(job: Job, items: Sequence[Item], *, first_sequence: int) -> list[SubJob]:
    """Create the sub-jobs that slice ``items``, point each item at its sub-job, and publish
    the sub-jobs once the surrounding transaction commits."""
    slices = _split_into_subjobs([item.size for item in items])
    subjobs = SubJob.objects.bulk_create(
        SubJob(
            job=job,
            sequence=sequence,
            files_total=len(positions),
            bytes_total=sum(items[p].size for p in positions),
        )
        for sequence, positions in enumerate(slices, start=first_sequence)
    )
    for subjob, positions in zip(subjobs, slices, strict=True):
        for p in positions:
            items[p].subjob = subjob
    subjob_ids = [s.pk for s in subjobs]
    transaction.on_commit(lambda: subjobs_publish(subjob_ids=subjob_ids))
    return subjobs


def subjobs_publish(*, subjob_ids: Iterable[int]) -> int:
    """Hand NOT_STARTED sub-jobs to the broker, each under a fresh Celery task id.

    The task ids are recorded in one UPDATE per batch (a big job has hundreds of sub-jobs), then
    each sub-job is published. A failure to publish is logged, not raised: the sub-job stays
    NOT_STARTED in the database and the reconciler publishes it again."""
    published = 0
    subjob_ids = list(subjob_ids)
    for start in range(0, len(subjob_ids), PUBLISH_BATCH):
        task_ids = {pk: str(uuid.uuid4()) for pk in subjob_ids[start : start + PUBLISH_BATCH]}
        SubJob.objects.filter(pk__in=task_ids, status=JobStatus.NOT_STARTED).update(
            celery_task_id=Case(*(When(pk=pk, then=Value(t)) for pk, t in task_ids.items())),
            dispatched_at=timezone.now(),
        )
        recorded = SubJob.objects.filter(
            pk__in=task_ids, status=JobStatus.NOT_STARTED, celery_task_id__in=task_ids.values()
        ).values_list("pk", flat=True)
        queue = current_app.amqp.queues[STAGING_QUEUE]
        for subjob_id in recorded:
            try:
                # Declaring the queue on every publish costs one SADD, and keeps messages from
                # being dropped as undeliverable when the broker lost its bindings (a flush).
                current_app.send_task(
                    STAGE_SUBJOB_TASK,
                    args=[subjob_id],
                    task_id=task_ids[subjob_id],
                    declare=[queue],
                )
            except Exception:
                logger.exception(
                    "could not publish sub-job %s; the reconciler will retry", subjob_id
                )
                continue
            published += 1
    return published


def job_cancel(*, job: Job) -> Job:
    """Ask a job to stop: CANCELLING at once, queued sub-jobs cancelled and revoked, running ones
    stop at their next chunk boundary; CANCELLED once nothing runs. Cancelling a cancelled or
    cancelling job is harmless; cancelling a finished or failed one is a conflict."""
    moved = Job.objects.filter(
        pk=job.pk, status__in=[JobStatus.NOT_STARTED, JobStatus.RUNNING]
    ).update(status=JobStatus.CANCELLING, updated_at=timezone.now())
    if not moved:
        job.refresh_from_db(fields=["status"])
        if job.status in (JobStatus.CANCELLING, JobStatus.CANCELLED):
            return job
        raise ConflictError(f"job {job.uuid} is already {job.status} and cannot be cancelled")

    queued = list(
        SubJob.objects.filter(job=job, status=JobStatus.NOT_STARTED).values_list(
            "pk", "celery_task_id"
        )
    )
    now = timezone.now()
    for subjob_id, task_id in queued:
        with transaction.atomic():
            if SubJob.objects.filter(pk=subjob_id, status=JobStatus.NOT_STARTED).update(
                status=JobStatus.CANCELLED, finished_at=now
            ):
                Item.objects.filter(
                    subjob_id=subjob_id, status__in=[JobStatus.NOT_STARTED, JobStatus.RUNNING]
                ).update(status=JobStatus.CANCELLED, finished_at=now)
        if task_id:
            try:
                current_app.control.revoke(task_id)
            except Exception:
                logger.warning("could not revoke task %s; its worker will skip it", task_id)
    job_rollup(job_id=job.pk)
    job.refresh_from_db()
    return job


@transaction.atomic
def job_retry(*, job: Job) -> Job:
    """Run a terminal job's failed items again, as new sub-jobs; finished items stay as they
    are. Retrying a job that is still active, or that has no failed item, is a conflict."""
    failed = list(Item.objects.filter(job=job, status=JobStatus.FAILED).order_by("pk"))
    if not failed:
        job.refresh_from_db(fields=["status"])
        reason = "is still active" if job.status in ACTIVE_STATUSES else "has no failed item"
        raise ConflictError(f"job {job.uuid} {reason}; there is nothing to retry")
    now = timezone.now()
    moved = Job.objects.filter(
        pk=job.pk, status__in=[JobStatus.FAILED, JobStatus.PARTIALLY_FAILED]
    ).update(status=JobStatus.NOT_STARTED, finished_at=None, files_failed=0, updated_at=now)
    if not moved:
        raise ConflictError(f"job {job.uuid} is {job.status}; only failed jobs can be retried")
    last_sequence = job.subjobs.order_by("-sequence").values_list("sequence", flat=True).first()
    subjobs = _attach_subjobs(job, failed, first_sequence=(last_sequence or 0) + 1)
    for subjob in subjobs:
        Item.objects.filter(pk__in=[i.pk for i in failed if i.subjob_id == subjob.pk]).update(
            subjob=subjob, status=JobStatus.NOT_STARTED, error="", bytes_done=0, finished_at=None
        )
    Pin.objects.filter(job=job, path__in=[i.path for i in failed]).update(
        released_at=None, expires_at=now + job.lifetime
    )
    job.refresh_from_db()
    return job


def job_rollup(*, job_id: int) -> str | None:
    """Give a job its final status once every sub-job is terminal; returns it, or None while
    work remains. Safe to call from several workers at once: the last CAS wins nothing twice."""
    if SubJob.objects.filter(job_id=job_id).exclude(status__in=TERMINAL_STATUSES).exists():
        return None
    counts = Item.objects.filter(job_id=job_id).aggregate(
        total=Count("pk"),
        finished=Count("pk", filter=Q(status=JobStatus.FINISHED)),
        failed=Count("pk", filter=Q(status=JobStatus.FAILED)),
        bytes_done=Sum("size", filter=Q(status=JobStatus.FINISHED), default=0),
    )
    current = Job.objects.filter(pk=job_id).values_list("status", "lifetime").first()
    if current is None or current[0] in TERMINAL_STATUSES:
        return None
    status, lifetime = current
    if status == JobStatus.CANCELLING:
        final = JobStatus.CANCELLED
    elif counts["finished"] == counts["total"]:
        final = JobStatus.FINISHED
    elif counts["finished"]:
        final = JobStatus.PARTIALLY_FAILED
    else:
        final = JobStatus.FAILED
    now = timezone.now()
    with transaction.atomic():
        moved = Job.objects.filter(pk=job_id, status__in=ACTIVE_STATUSES).update(
            status=final,
            finished_at=now,
            files_done=counts["finished"],
            files_failed=counts["failed"],
            bytes_done=counts["bytes_done"],
            result={
                "files_finished": counts["finished"],
                "files_failed": counts["failed"],
                "files_cancelled": counts["total"] - counts["finished"] - counts["failed"],
            },
            updated_at=now,
        )
        if moved and final in (JobStatus.FINISHED, JobStatus.PARTIALLY_FAILED):
            # Lifetime counts from the moment the files are ready, as Glacier restores do.
            Pin.objects.filter(job_id=job_id, released_at__isnull=True).update(
                expires_at=now + lifetime
            )
    return final if moved else None
