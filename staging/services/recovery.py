"""Periodic repairs run by beat: take back sub-jobs of dead workers, re-publish work the broker
lost, and delete staged copies nobody pins any more. The database is the record of what must
run; the broker is only how work is handed out."""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from staging.broker import broker_queue_lengths
from staging.models import ACTIVE_STATUSES, Item, Job, JobStatus, Pin, Store, SubJob
from staging.services.jobs import STAGING_QUEUE, job_rollup, subjobs_publish
from staging.storage import UnsafePathError, resolve_under

logger = logging.getLogger(__name__)

WORKER_LOST = "worker lost: the sub-job's lease expired {attempts} times"


@dataclass
class ReapSummary:
    requeued: int = 0
    failed: int = 0
    cancelled: int = 0


def subjobs_reap_expired() -> ReapSummary:
    """Sub-jobs whose lease expired belong to a worker that died (or lost the database): hand
    them out again, or fail their items with "worker lost" after MAX_ATTEMPTS."""
    summary = ReapSummary()
    now = timezone.now()
    max_attempts = settings.STAGING["MAX_ATTEMPTS"]
    expired = SubJob.objects.filter(status=JobStatus.RUNNING, lease_expires_at__lt=now)
    for subjob_id, job_id, attempts, job_status in expired.values_list(
        "pk", "job_id", "attempts", "job__status"
    ):
        still_expired = SubJob.objects.filter(
            pk=subjob_id, status=JobStatus.RUNNING, lease_expires_at__lt=now
        )
        if job_status in (JobStatus.CANCELLING, JobStatus.CANCELLED):
            final, item_status, error = JobStatus.CANCELLED, JobStatus.CANCELLED, ""
        elif attempts >= max_attempts:
            final, item_status = JobStatus.FAILED, JobStatus.FAILED
            error = WORKER_LOST.format(attempts=attempts)
        else:
            if still_expired.update(status=JobStatus.NOT_STARTED, worker="", lease_expires_at=None):
                subjobs_publish(subjob_ids=[subjob_id])
                summary.requeued += 1
            continue
        with transaction.atomic():
            if not still_expired.update(
                status=final, finished_at=now, lease_expires_at=None, error=error
            ):
                continue
            Item.objects.filter(
                subjob_id=subjob_id, status__in=[JobStatus.NOT_STARTED, JobStatus.RUNNING]
            ).update(status=item_status, error=error, finished_at=now)
        if final == JobStatus.CANCELLED:
            summary.cancelled += 1
        else:
            summary.failed += 1
        job_rollup(job_id=job_id)
    if summary.requeued or summary.failed or summary.cancelled:
        logger.warning("reaper: %s", summary)
    return summary


def subjobs_reconcile() -> int:
    """Re-publish sub-jobs that the database says are queued but no worker has taken for
    REDISPATCH_AFTER_SECONDS while the staging queue is empty: the broker lost their messages
    (a restart without persistence, a flush). A duplicate delivery is harmless (the lease)."""
    if broker_queue_lengths((STAGING_QUEUE,))[STAGING_QUEUE] > 0:
        return 0
    cutoff = timezone.now() - timedelta(seconds=settings.STAGING["REDISPATCH_AFTER_SECONDS"])
    lost = SubJob.objects.filter(
        Q(dispatched_at__lt=cutoff) | Q(dispatched_at__isnull=True, created_at__lt=cutoff),
        status=JobStatus.NOT_STARTED,
        job__status__in=ACTIVE_STATUSES,
    ).values_list("pk", flat=True)
    published = subjobs_publish(subjob_ids=list(lost[:1000]))
    if published:
        logger.warning("reconciler: re-published %s lost sub-jobs", published)
    return published


def _live_pins() -> Q:
    return Q(released_at__isnull=True, expires_at__gt=timezone.now())


@transaction.atomic
def job_release(*, job: Job, paths: list[str] | None = None) -> int:
    """Drop the job's pins (all, or those of ``paths``); the sweeper deletes the staged copies
    once no other job pins them. Returns how many pins were released."""
    pins = Pin.objects.filter(job=job, released_at__isnull=True)
    if paths is not None:
        pins = pins.filter(path__in=paths)
    return pins.update(released_at=timezone.now())


@transaction.atomic
def paths_release(*, store: Store, paths: list[str], jobs) -> int:
    """Drop the pins that ``jobs`` (a queryset: the jobs a caller may steer) hold on ``paths`` of
    ``store``, as ``job_release`` does for one job; returns how many pins were released."""
    pins = Pin.objects.filter(
        store=store, path__in=paths, released_at__isnull=True, job__in=jobs.values("pk")
    )
    return pins.update(released_at=timezone.now())


def staged_copies_sweep(*, batch: int = 500) -> int:
    """Delete staged copies whose every pin was released or expired. The store row is locked
    while a batch is checked and deleted, and job creation takes the same lock, so a new request
    cannot find a copy "already staged" a moment before it disappears."""
    removed = 0
    # A released pin of a job still running is kept until the job ends: a copy of it may still
    # land after this sweep, and would otherwise be left with no pin for a later sweep to find.
    dead = Pin.objects.exclude(_live_pins()).exclude(job__status__in=ACTIVE_STATUSES)
    for store_id in dead.values_list("store_id", flat=True).distinct():
        with transaction.atomic():
            store = Store.objects.select_for_update().get(pk=store_id)
            dead_paths = set(
                dead.filter(store=store).values_list("path", flat=True).distinct()[:batch]
            )
            live_paths = set(
                Pin.objects.filter(_live_pins(), store=store, path__in=dead_paths).values_list(
                    "path", flat=True
                )
            )
            for path in dead_paths - live_paths:
                try:
                    resolve_under(store.staging_root, path).unlink(missing_ok=True)
                    removed += 1
                except (OSError, UnsafePathError) as exc:
                    logger.warning("sweeper: cannot remove %s: %s", path, exc)
            dead.filter(store=store, path__in=dead_paths - live_paths).delete()
    if removed:
        logger.info("sweeper: removed %s staged copies", removed)
    return removed
