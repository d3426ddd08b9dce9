"""Periodic repairs run by beat: take back sub-jobs of dead workers (the reaper), re-publish work
the broker lost (the reconciler), settle every state a crash can strand (the janitor), and
delete staged copies nobody pins any more (the sweeper; jobs let go of their pins through
staging.services.releases). The database is the record of what must run; the broker is only
how work is handed out."""

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Now
from django.utils import timezone

from staging.broker import broker_queue_lengths, broker_queue_task_count
from staging.models import (
    ACTIVE_STATUSES,
    PENDING_STATUSES,
    TERMINAL_STATUSES,
    Job,
    JobStatus,
    Pin,
    Store,
    SubJob,
)
from staging.selectors_dispatch import UNCAPPED_TASKS
from staging.services import transitions
from staging.services.jobs import jobs_cancel_queued_subjobs
from staging.services.publishing import (
    CONTROL_QUEUE,
    STAGING_QUEUE,
    SUBJOB_TASK_NAMES,
    subjobs_publish,
)
from staging.services.staged_copies import lost_subjob_temporaries_remove
from staging.storage import UnsafePathError, rename_aside_beneath, unlink_beneath

logger = logging.getLogger(__name__)

# A swept copy is renamed to this (plus its name and a random part) under the store lock, then
# unlinked after it: a reader never finds it, and a new request stages the file afresh.
SWEPT_PREFIX = ".stagingsvc-swept-"

WORKER_LOST = "worker lost: the sub-job's lease expired {attempts} times"
# Sub-jobs republished by age per reconciler pass, at most (the next pass takes the rest).
REPUBLISH_BATCH = 1000


@dataclass
class ReapSummary:
    requeued: int = 0
    failed: int = 0
    cancelled: int = 0


def subjobs_reap_expired() -> ReapSummary:
    """Sub-jobs whose lease expired (by the database's clock) belong to a worker that died or
    lost the database: each counts one failure and is handed out again, or fails with "worker
    lost" at MAX_ATTEMPTS failures; one of a job being cancelled is cancelled."""
    summary = ReapSummary()
    expired = SubJob.objects.filter(status=JobStatus.RUNNING, lease_expires_at__lt=Now())
    for subjob_id, failures, job_status in expired.values_list("pk", "failures", "job__status"):
        if job_status in transitions.CANCELLED_JOB:
            if transitions.subjob_cancel_expired(subjob_id):
                summary.cancelled += 1
                lost_subjob_temporaries_remove(subjob_id)
            continue
        if not transitions.subjob_release_expired(
            subjob_id=subjob_id, failure=WORKER_LOST.format(attempts=failures + 1)
        ):
            continue
        # Now, not at its next run: the job may be cancelled before that, or it failed for good.
        lost_subjob_temporaries_remove(subjob_id)
        status = SubJob.objects.values_list("status", flat=True).get(pk=subjob_id)
        if status == JobStatus.NOT_STARTED:
            subjobs_publish(subjob_ids=[subjob_id])
            summary.requeued += 1
        elif status == JobStatus.FAILED:
            summary.failed += 1
    if summary.requeued or summary.failed or summary.cancelled:
        logger.warning("reaper: %s", summary)
    return summary


def broker_lost_its_data() -> bool:
    """True when the broker no longer holds the marker key this function leaves in it: it was
    restarted without persistence or flushed, and every queued message went with the marker.
    (The first call on a new broker also answers True; republishing then is harmless.) Brokers
    other than Redis answer False: their queues are not checked this way."""
    key = settings.STAGING["BROKER_MARKER_KEY"]
    with current_app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1)
        if connection.transport.driver_type != "redis":
            return False
        # Through kombu's own client, so the key carries the broker's key prefix as the queues
        # do (kombu prefixes HSET/HGET, not SET/GET).
        client = connection.default_channel.client
        if client.hget(key, "since") is not None:
            return False
        client.hset(key, "since", str(time.time()))
        return True


def subjobs_reconcile() -> int:
    """Republish dispatched sub-jobs whose messages the broker lost. At once, all of them, when
    the broker lost its data (the marker key is gone); otherwise the oldest of those dispatched
    REDISPATCH_AFTER_SECONDS ago, as many as the database has queued dispatched sub-jobs beyond
    what their queue holds (staging; control for releases), whatever the queue's length (this
    also finds messages lost by a broker restored from an older snapshot, which kept the
    marker). A duplicate delivery is harmless (the lease). Only what the dispatcher already
    handed out is republished, so the dispatcher's limits hold (sub-jobs never dispatched wait
    for it). Sub-jobs of jobs being cancelled are never republished: the janitor settles them."""
    waiting = SubJob.objects.filter(
        status=JobStatus.NOT_STARTED,
        dispatched_at__isnull=False,
        failures__lt=settings.STAGING["MAX_ATTEMPTS"],
        job__status__in=PENDING_STATUSES,
    ).order_by("dispatched_at", "pk")
    if broker_lost_its_data():
        lost = list(waiting.values_list("pk", flat=True))  # published in batches
        reason = "the broker lost its data"
    else:
        lost, missing = [], 0
        cutoff = timezone.now() - timedelta(seconds=settings.STAGING["REDISPATCH_AFTER_SECONDS"])
        # Release sub-jobs travel on the control queue among beat's passes and wakes: there only
        # their own messages count (read only when a release waits). The staging queue carries
        # sub-jobs alone.
        for on_it, held in (
            (
                waiting.exclude(job__task__in=UNCAPPED_TASKS),
                lambda: broker_queue_lengths((STAGING_QUEUE,))[STAGING_QUEUE],
            ),
            (
                waiting.filter(job__task__in=UNCAPPED_TASKS),
                lambda: broker_queue_task_count(CONTROL_QUEUE, SUBJOB_TASK_NAMES),
            ),
        ):
            expected = on_it.count()
            missing_here = expected - held() if expected else 0
            if missing_here <= 0:
                continue
            missing += missing_here
            old = on_it.filter(dispatched_at__lt=cutoff)
            lost += old.values_list("pk", flat=True)[: min(missing_here, REPUBLISH_BATCH)]
        if not missing:
            return 0
        reason = f"{missing} queued sub-jobs have no message"
    published = subjobs_publish(subjob_ids=lost)
    if published:
        logger.warning("reconciler: re-published %s sub-jobs (%s)", published, reason)
    return published


@dataclass
class JanitorSummary:
    cancelled: int = 0
    rolled_up: int = 0
    failed: int = 0


def jobs_janitor(*, batch: int = 500) -> JanitorSummary:
    """Repair every state that would otherwise stay stuck (each repair is a transition, so it
    happens, is counted and is logged once):

    - a CANCELLING job: sub-jobs queued since the cancel (handed back, requeued) are cancelled,
      and once nothing runs the job is CANCELLED;
    - an active job whose sub-jobs are all over (a crash between the last sub-job's end and the
      roll-up) is rolled up;
    - a queued sub-job with MAX_ATTEMPTS failures fails with its last error (and its job rolls
      up)."""
    summary = JanitorSummary()
    cancelling = Job.objects.filter(status=JobStatus.CANCELLING).exclude(
        Exists(SubJob.objects.filter(job=OuterRef("pk"), status=JobStatus.RUNNING))
    )
    for job_id in cancelling.values_list("pk", flat=True)[:batch]:
        jobs_cancel_queued_subjobs(job_id=job_id)
        if transitions.job_settle(job_id) == JobStatus.CANCELLED:
            summary.cancelled += 1
            logger.warning("janitor: job %s was left CANCELLING; now CANCELLED", job_id)
    crashed = SubJob.objects.filter(
        status=JobStatus.NOT_STARTED, failures__gte=settings.STAGING["MAX_ATTEMPTS"]
    ).values_list("pk", "job_id", "error")
    for subjob_id, job_id, error in crashed[:batch]:
        with transaction.atomic():
            if transitions.subjob_fail(subjob_id=subjob_id, error=error or "failed repeatedly"):
                summary.failed += 1
                logger.warning("janitor: sub-job %s failed too often: %s", subjob_id, error)
                transitions.job_settle(job_id)
    ended = (
        Job.objects.filter(status__in=PENDING_STATUSES)
        .filter(Exists(SubJob.objects.filter(job=OuterRef("pk"))))
        .exclude(
            Exists(SubJob.objects.filter(job=OuterRef("pk")).exclude(status__in=TERMINAL_STATUSES))
        )
    )
    for job_id in ended.values_list("pk", flat=True)[:batch]:
        final = transitions.job_settle(job_id)
        if final:
            summary.rolled_up += 1
            logger.warning("janitor: job %s had every sub-job over; rolled up %s", job_id, final)
    return summary


def _live_pins() -> Q:
    return Q(released_at__isnull=True, expires_at__gt=timezone.now())


def staged_copies_sweep(*, batch: int = 500) -> int:
    """Delete staged copies whose every pin was released or expired, a page of paths at a time
    in path order (a page of copies others still pin does not stop the sweep). Under the store
    lock, which job creation and retry also take, a page is checked, its dead pins deleted and
    its copies renamed aside; the slow part, unlinking them, happens after the lock is let go.
    So a new request never finds a copy "already staged" a moment before it disappears."""
    removed = 0
    # A released pin of a job still running is kept until the job ends: a copy of it may still
    # land after this sweep, and would otherwise be left with no pin for a later sweep to find.
    dead = Pin.objects.exclude(_live_pins()).exclude(job__status__in=ACTIVE_STATUSES)
    store_ids = list(dead.values_list("store_id", flat=True).distinct())
    staging_roots = dict(Store.objects.filter(pk__in=store_ids).values_list("pk", "staging_root"))
    for store_id in store_ids:
        after = ""
        while True:
            doomed, after = _sweep_page(dead, store_id=store_id, after=after, batch=batch)
            for aside in doomed:
                try:
                    removed += unlink_beneath(staging_roots[store_id], aside)
                except (OSError, UnsafePathError) as exc:
                    logger.warning("sweeper: cannot remove %s: %s", aside, exc)
            if after is None:
                break
    if removed:
        logger.info("sweeper: removed %s staged copies", removed)
    return removed


def _sweep_page(dead, *, store_id: int, after: str, batch: int) -> tuple[list[str], str | None]:
    """One page of the sweep under the store lock: the copies renamed aside (their relative
    paths under the staging root, to unlink), and the path to continue after (None: the store
    is done). Every file operation goes through directory descriptors beneath the root."""
    doomed: list[str] = []
    try:
        with transaction.atomic():
            store = Store.objects.select_for_update().get(pk=store_id)
            page = list(
                dead.filter(store=store, path__gt=after)
                .order_by("path")
                .values_list("path", flat=True)
                .distinct()[:batch]
            )
            if not page:
                return [], None
            live = set(
                Pin.objects.filter(_live_pins(), store=store, path__in=page).values_list(
                    "path", flat=True
                )
            )
            unpinned = [path for path in page if path not in live]
            for path in unpinned:
                try:
                    aside = rename_aside_beneath(store.staging_root, path, SWEPT_PREFIX)
                    if aside is not None:
                        doomed.append(aside)
                except (OSError, UnsafePathError) as exc:
                    logger.warning("sweeper: cannot remove %s: %s", path, exc)
            dead.filter(store=store, path__in=unpinned).delete()
    except Exception:
        # The pins stay (rolled back), but nothing pinned these copies any more: remove what was
        # renamed aside, and a later sweep deletes the pins of the files now gone.
        for aside in doomed:
            unlink_beneath(store.staging_root, aside)
        raise
    return doomed, (page[-1] if len(page) == batch else None)
