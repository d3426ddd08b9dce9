"""Deleting jobs: retention deletes finished jobs, and everything recorded about them, once they
are older than the configured age (``STAGING["RETENTION"]``, 30 days unless set; the DTS may ask
about a request for 7); ``job_delete`` deletes one job on request, by the same rules.

A job is purged when it is terminal, ended before the cut-off, and holds no pin any more: while a
pin row exists its staged copy is still held, or the sweeper has yet to delete it, and the pin is
how the sweeper finds the file. Jobs whose copies are pinned longer than the retention age are
kept until their pins are gone.

Deletion runs in batches, one transaction each, so a purge of millions of rows never holds
long locks: items, sub-jobs, the jobs' TaskResult rows, then the jobs (and what cascades from
them). TaskResult rows older than the cut-off that belong to no sub-job still in the database
(earlier dispatches, periodic Celery tasks) go too.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.dispatch import Signal
from django.utils import timezone
from django_celery_results.models import TaskResult

from staging.errors import ConflictError
from staging.models import ACTIVE_STATUSES, TERMINAL_STATUSES, Item, Job, Pin, SubJob

logger = logging.getLogger(__name__)

# Sent once a batch of jobs is deleted and committed, with ``job_ids`` and ``job_uuids``, for
# whatever else must go with them. (A job's results file needs no receiver here: it is removed
# on the job's post_delete by staging.signals, however the job was deleted.)
jobs_purged = Signal()


@dataclass
class PurgeSummary:
    jobs: int = 0
    subjobs: int = 0
    items: int = 0
    task_results: int = 0
    dry_run: bool = False


def _cutoff(older_than: timedelta | None, now: datetime | None) -> datetime:
    return (now or timezone.now()) - (older_than or settings.STAGING["RETENTION"])


def jobs_purgeable(*, cutoff: datetime) -> QuerySet[Job]:
    """Terminal jobs that ended before ``cutoff`` and hold no pin."""
    return (
        Job.objects.filter(status__in=TERMINAL_STATUSES)
        .filter(Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, updated_at__lt=cutoff))
        .exclude(Exists(Pin.objects.filter(job=OuterRef("pk"))))
    )


@transaction.atomic
def job_delete(*, job: Job) -> None:
    """Delete a job that has ended and holds no staged copy, with everything recorded about it
    (its results file goes once the deletion commits). A job still at work, or whose pins the
    sweeper has yet to clear, is a conflict: deleting its pins would leave its copies on disk
    with nothing to find them by."""
    status = Job.objects.filter(pk=job.pk).values_list("status", flat=True).first()
    if status in ACTIVE_STATUSES:
        raise ConflictError(f"job {job.uuid} is {status}; cancel it before deleting it")
    if Pin.objects.filter(job=job).exists():
        raise ConflictError(
            f"job {job.uuid} still pins staged copies; release them and let the sweeper remove "
            "them before deleting the job"
        )
    job.delete()


def _orphan_task_results(*, cutoff: datetime) -> QuerySet[TaskResult]:
    return TaskResult.objects.filter(date_done__lt=cutoff).exclude(
        Exists(SubJob.objects.filter(celery_task_id=OuterRef("task_id")))
    )


def jobs_purge(
    *,
    older_than: timedelta | None = None,
    batch_size: int | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PurgeSummary:
    """Delete what retention allows (see the module docstring) and say how much; with
    ``dry_run`` only count it."""
    cutoff = _cutoff(older_than, now)
    batch_size = batch_size or settings.STAGING["RETENTION_BATCH"]
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if dry_run:
        return _purge_counted(cutoff=cutoff)
    summary = PurgeSummary()
    last_pk = 0
    while True:
        batch = list(
            jobs_purgeable(cutoff=cutoff)
            .filter(pk__gt=last_pk)
            .order_by("pk")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not batch:
            break
        last_pk = batch[-1]
        _purge_batch(job_ids=batch, cutoff=cutoff, summary=summary)
    while True:
        stale = list(_orphan_task_results(cutoff=cutoff).values_list("pk", flat=True)[:batch_size])
        if not stale:
            break
        summary.task_results += TaskResult.objects.filter(pk__in=stale).delete()[0]
    if summary.jobs or summary.task_results:
        logger.info("retention: %s", summary)
    return summary


def _purge_batch(*, job_ids: list[int], cutoff: datetime, summary: PurgeSummary) -> None:
    with transaction.atomic():
        # Re-checked under lock: a job retried or pinned since it was listed stays.
        locked = list(
            jobs_purgeable(cutoff=cutoff)
            .select_for_update()
            .filter(pk__in=job_ids)
            .values_list("pk", "uuid")
        )
        if not locked:
            return
        ids = [pk for pk, _ in locked]
        subjobs = SubJob.objects.filter(job_id__in=ids)
        task_ids = list(subjobs.exclude(celery_task_id="").values_list("celery_task_id", flat=True))
        summary.items += Item.objects.filter(job_id__in=ids).delete()[0]
        summary.subjobs += subjobs.delete()[1].get(SubJob._meta.label, 0)
        summary.task_results += TaskResult.objects.filter(task_id__in=task_ids).delete()[0]
        summary.jobs += Job.objects.filter(pk__in=ids).delete()[1].get(Job._meta.label, 0)
        uuids = [str(uuid) for _, uuid in locked]
        transaction.on_commit(
            lambda: jobs_purged.send(sender=Job, job_ids=ids, job_uuids=uuids),
            robust=True,
        )


def _purge_counted(*, cutoff: datetime) -> PurgeSummary:
    jobs = jobs_purgeable(cutoff=cutoff)
    subjobs = SubJob.objects.filter(job__in=jobs.values("pk"))
    task_ids = subjobs.exclude(celery_task_id="").values("celery_task_id")
    return PurgeSummary(
        jobs=jobs.count(),
        subjobs=subjobs.count(),
        items=Item.objects.filter(job__in=jobs.values("pk")).count(),
        task_results=TaskResult.objects.filter(task_id__in=task_ids).count()
        + _orphan_task_results(cutoff=cutoff).count(),
        dry_run=True,
    )
