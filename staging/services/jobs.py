"""Job lifecycle writes: create, dispatch, cancel, retry, roll up. Every status change is a
transition of staging.services.transitions."""

import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Case, Value, When
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
    SubJob,
)
from staging.services import transitions
from staging.services.accounts import account_work_admit
from staging.services.dispatch import dispatch_wake
from staging.services.staging_space import staging_space_admit

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
    wake the dispatcher once the transaction commits."""
    if not files:
        raise ServiceError("a staging request needs at least one file", field="ids")
    if any(f.store_id != store.pk for f in files):
        raise ServiceError("all files of one request must belong to the same store", field="ids")
    account_work_admit(owner=owner, files=len(files), size=sum(f.size for f in files), task=task)
    staging_space_admit(store=store, size=sum(f.size for f in files))
    lifetime = lifetime or settings.STAGING["DEFAULT_LIFETIME"]
    # The sweeper holds this lock while it picks unpinned copies and renames them aside (see
    # staged_copies_sweep), so it never takes a copy this job's new pins hold.
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
        Item.objects.bulk_create(items, batch_size=1000)
    else:
        SubJob.objects.create(job=job, sequence=1)
        transaction.on_commit(dispatch_wake)
    return job


def _attach_subjobs(job: Job, items: Sequence[Item], *, first_sequence: int) -> list[SubJob]:
    """Create the sub-jobs that slice ``items``, point each item at its sub-job, and wake the
    dispatcher (staging.services.dispatch) once the surrounding transaction commits."""
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
    transaction.on_commit(dispatch_wake)
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
    stop at their next chunk boundary; CANCELLED once nothing runs. Cancelling a cancelling job
    again cancels whatever was handed back to the queue since; cancelling a cancelled one is
    harmless; cancelling a finished or failed one is a conflict."""
    if not transitions.job_request_cancel(job.pk):
        job.refresh_from_db(fields=["status"])
        if job.status == JobStatus.CANCELLED:
            return job
        if job.status != JobStatus.CANCELLING:
            raise ConflictError(f"job {job.uuid} is already {job.status} and cannot be cancelled")
    jobs_cancel_queued_subjobs(job_id=job.pk)
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
    last_sequence = job.subjobs.order_by("-sequence").values_list("sequence", flat=True).first()
    subjobs = _attach_subjobs(job, failed, first_sequence=(last_sequence or 0) + 1)
    for subjob in subjobs:
        transitions.items_reopen(
            item_ids=[i.pk for i in failed if i.subjob_id == subjob.pk], subjob_id=subjob.pk
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
        batch_size=1000,
        ignore_conflicts=True,
    )


def job_rollup(*, job_id: int) -> str | None:
    """Give a job its final status once every sub-job is terminal; returns it, or None while
    work remains (see staging.services.transitions.job_settle)."""
    return transitions.job_settle(job_id)
