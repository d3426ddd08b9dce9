"""Every status change of a job, a sub-job and an item, and nothing else writes ``status``.

Each transition is one compare-and-set: an UPDATE filtered on the state it starts from (and, for
a worker's writes, on the lease holder), whose row count says whether it happened. A duplicate
delivery, a late worker, a reaper and a cancel racing each other can therefore never move a row
backwards or twice. Callers are the services (jobs, execution, recovery, tape); they decide
*when*, this module decides *whether*.

Job::

                   job_mark_running                 job_settle (every sub-job terminal)
      NOT_STARTED ──────────────────► RUNNING ────────────────► FINISHED
        │     ▲                          │            ├───────► PARTIALLY_FAILED ─┐
        │     │                          │            └───────► FAILED ───────────┤
        │     └──────────────────── job_reopen (retry of the failed items) ───────┘
        │ job_request_cancel             │ job_request_cancel
        └──────────► CANCELLING ◄────────┘
                         │ job_settle (no sub-job runs any more)
                         ▼
                     CANCELLED

    The roll-up (job_settle) decides from the items: cancelled items count as neither success
    nor failure; of the others, all finished → FINISHED, some → PARTIALLY_FAILED, none →
    FAILED; every item cancelled, or a cancel asked for → CANCELLED. The job row is locked
    while it is decided, so a concurrent cancel is never overwritten with FINISHED.

Sub-job (``attempts`` counts takes; ``failures`` counts real failures, MAX_ATTEMPTS of which
fail it)::

                   subjob_take: lease = holder + expiry by the database's clock
      NOT_STARTED ─────────────────────────► RUNNING ── subjob_finish ──► FINISHED
        │  │  │  ◄─────────────────────────    │   │    (+ job_settle,    | PARTIALLY_FAILED
        │  │  │    subjob_hand_back: warm      │   │     one transaction) | FAILED | CANCELLED
        │  │  │    shutdown (no failure), an   │   │
        │  │  │    unexpected error (+1)       │   └─ subjob_take by another worker once the
        │  │  │                                │      lease expired or its holder died (+1)
        │  │  │  ◄─────────────────────────    │
        │  │  │    subjob_release_expired      └─ subjob_cancel_expired (job cancelling)
        │  │  │    (the reaper, +1)                 ──► CANCELLED
        │  │  └─ subjob_cancel_queued (its job is CANCELLING) ──► CANCELLED
        │  └──── subjob_fail (MAX_ATTEMPTS failures) ──► FAILED, with the last error
        └─────── subjob_requeued decides between those two for any queued sub-job

Item::

      NOT_STARTED ─► RUNNING ─► FINISHED | FAILED | CANCELLED (items_cancel: on its own)
           ▲            │
           └────────────┘ its sub-job handed back or reaped (the bytes it copied taken back)
      FAILED ─► NOT_STARTED (items_reopen, a retry)

Worker-side writes are fenced by the lease holder: ``subjob_hold`` locks the sub-job row only
while the writer still holds the lease, so no other worker can take it over until that
transaction ends, and a writer that lost it gets LeaseLost and writes nothing.
"""

import logging
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import (
    Case,
    Count,
    DateTimeField,
    ExpressionWrapper,
    F,
    PositiveIntegerField,
    Q,
    Sum,
    When,
)
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from staging.models import TERMINAL_STATUSES, Item, Job, JobStatus, Pin, SubJob

logger = logging.getLogger(__name__)

ACTIVE_ITEM = (JobStatus.NOT_STARTED, JobStatus.RUNNING)
CANCELLED_JOB = (JobStatus.CANCELLING, JobStatus.CANCELLED)


class LeaseLost(Exception):
    """This worker no longer holds the sub-job's lease: it must write nothing more."""


def lease_deadline():
    """When a lease taken or renewed now expires, by the database's clock (never a worker's)."""
    return ExpressionWrapper(
        Now() + timedelta(seconds=settings.STAGING["LEASE_SECONDS"]),
        output_field=DateTimeField(),
    )


# --- Jobs -------------------------------------------------------------------------------------


def job_mark_running(job_id: int) -> bool:
    now = timezone.now()
    return bool(
        Job.objects.filter(pk=job_id, status=JobStatus.NOT_STARTED).update(
            status=JobStatus.RUNNING, started_at=now, updated_at=now
        )
    )


def job_request_cancel(job_id: int) -> bool:
    return bool(
        Job.objects.filter(pk=job_id, status__in=[JobStatus.NOT_STARTED, JobStatus.RUNNING]).update(
            status=JobStatus.CANCELLING, updated_at=timezone.now()
        )
    )


def job_reopen(job_id: int) -> bool:
    """A failed or partially failed job goes back to NOT_STARTED for a retry of its failures."""
    return bool(
        Job.objects.filter(
            pk=job_id, status__in=[JobStatus.FAILED, JobStatus.PARTIALLY_FAILED]
        ).update(
            status=JobStatus.NOT_STARTED,
            finished_at=None,
            files_failed=0,
            updated_at=timezone.now(),
        )
    )


def _outcome_of_items(counts: dict) -> str:
    """Cancelled items count as neither success nor failure: the others decide."""
    decided = counts["total"] - counts["cancelled"]
    if decided == 0:
        return JobStatus.CANCELLED
    if counts["finished"] == decided:
        return JobStatus.FINISHED
    return JobStatus.PARTIALLY_FAILED if counts["finished"] else JobStatus.FAILED


def _job_final(status: str, counts: dict, subjob_statuses: set[str]) -> str:
    """The status a job ends in (see the module docstring)."""
    if status == JobStatus.CANCELLING:
        return JobStatus.CANCELLED
    if counts["total"] == 0:  # a task without items (noop): its sub-job's outcome is the job's
        if subjob_statuses <= {JobStatus.FINISHED}:
            return JobStatus.FINISHED
        if subjob_statuses <= {JobStatus.CANCELLED}:
            return JobStatus.CANCELLED
        return JobStatus.FAILED
    return _outcome_of_items(counts)


def job_settle(job_id: int) -> str | None:
    """Roll the job up once every sub-job is terminal: returns its final status, or None while
    work remains (or when it was already over). Safe from any number of callers at once."""
    with transaction.atomic():
        # The lock orders this roll-up with a concurrent cancel: the cancel waits, then finds the
        # job over (a conflict), or it came first and the roll-up reads CANCELLING.
        row = Job.objects.select_for_update().filter(pk=job_id).values_list("status", "lifetime")
        status, lifetime = row.first() or (None, None)
        if status is None or status in TERMINAL_STATUSES:
            return None
        subjob_statuses = set(SubJob.objects.filter(job_id=job_id).values_list("status", flat=True))
        if not subjob_statuses <= TERMINAL_STATUSES:
            return None
        counts = Item.objects.filter(job_id=job_id).aggregate(
            total=Count("pk"),
            finished=Count("pk", filter=Q(status=JobStatus.FINISHED)),
            failed=Count("pk", filter=Q(status=JobStatus.FAILED)),
            cancelled=Count("pk", filter=Q(status=JobStatus.CANCELLED)),
            bytes_done=Sum("size", filter=Q(status=JobStatus.FINISHED), default=0),
        )
        final = _job_final(status, counts, subjob_statuses)
        moment = timezone.now()
        moved = Job.objects.filter(pk=job_id, status=status).update(
            status=final,
            finished_at=moment,
            files_done=counts["finished"],
            files_failed=counts["failed"],
            bytes_done=counts["bytes_done"],
            result={
                "files_finished": counts["finished"],
                "files_failed": counts["failed"],
                "files_cancelled": counts["cancelled"],
            },
            updated_at=moment,
        )
        if not moved:
            # Moved under us inside this transaction (it is locked against anyone else): decide
            # again from what it is now.
            return job_settle(job_id)
        if final in (JobStatus.FINISHED, JobStatus.PARTIALLY_FAILED):
            # Lifetime counts from the moment the files are ready, as Glacier restores do.
            Pin.objects.filter(job_id=job_id, released_at__isnull=True).update(
                expires_at=moment + lifetime
            )
    return final


# --- Sub-jobs ---------------------------------------------------------------------------------


def subjob_take(*, subjob_id: int, worker: str, task_id: str, dead_holder: str = "") -> bool:
    """Take the lease of a queued sub-job, of one whose lease expired (by the database's clock),
    or of one held by ``dead_holder`` (a process known to be gone). Taking over from a lost
    holder counts one failure. Never for a job being cancelled."""
    if dead_holder:
        claimable = Q(status=JobStatus.RUNNING, worker=dead_holder)
    else:
        claimable = Q(status=JobStatus.NOT_STARTED) | Q(
            status=JobStatus.RUNNING, lease_expires_at__lt=Now()
        )
    return bool(
        SubJob.objects.filter(claimable, pk=subjob_id)
        # A subquery, not a join: with a join Django writes "WHERE id IN (SELECT ... JOIN ...)",
        # and PostgreSQL does not re-check a status inside that subquery when a concurrent claim
        # commits first, so two deliveries could both take the lease.
        .exclude(job_id__in=Job.objects.filter(status__in=CANCELLED_JOB).values("pk"))
        .update(
            failures=Case(
                When(status=JobStatus.RUNNING, then=F("failures") + 1),
                default=F("failures"),
                output_field=PositiveIntegerField(),
            ),
            status=JobStatus.RUNNING,
            worker=worker,
            celery_task_id=task_id,
            lease_expires_at=lease_deadline(),
            attempts=F("attempts") + 1,
            started_at=Coalesce(F("started_at"), timezone.now()),
        )
    )


def subjob_renew(*, subjob_id: int, worker: str) -> bool:
    """The heartbeat: extend the lease if ``worker`` still holds it."""
    return bool(
        SubJob.objects.filter(pk=subjob_id, status=JobStatus.RUNNING, worker=worker).update(
            lease_expires_at=lease_deadline()
        )
    )


def subjob_hold(*, subjob_id: int, worker: str) -> None:
    """Fence a worker's write: inside a transaction, lock the sub-job row if ``worker`` still
    holds its lease (nobody can take it over until the transaction ends), else LeaseLost."""
    held = (
        SubJob.objects.select_for_update()
        .filter(pk=subjob_id, status=JobStatus.RUNNING, worker=worker)
        .exists()
    )
    if not held:
        raise LeaseLost(f"sub-job {subjob_id} is no longer leased to {worker}")


def _release(running, *, failure: str) -> bool:
    """RUNNING → NOT_STARTED for the one sub-job ``running`` selects (False when it was not
    RUNNING as expected); the bytes its running items had copied are taken back from the
    counters (they will be copied again), and its queued fate decided (subjob_requeued)."""
    row = running.select_for_update().values_list("pk", "job_id").first()
    if row is None:
        return False
    subjob_id, job_id = row
    partial = Item.objects.filter(subjob_id=subjob_id, status=JobStatus.RUNNING)
    taken_back = partial.aggregate(n=Sum("bytes_done", default=0))["n"]
    running.update(
        status=JobStatus.NOT_STARTED,
        worker="",
        lease_expires_at=None,
        bytes_per_second=0,
        bytes_done=F("bytes_done") - taken_back,
        failures=F("failures") + (1 if failure else 0),
        **({"error": failure[:2000]} if failure else {}),
    )
    partial.update(status=JobStatus.NOT_STARTED, bytes_done=0)
    if taken_back:
        Job.objects.filter(pk=job_id).update(bytes_done=F("bytes_done") - taken_back)
    subjob_requeued(subjob_id)
    return True


def subjob_hand_back(*, subjob_id: int, worker: str, failure: str = "") -> bool:
    """The holder gives its sub-job back to the queue. A warm shutdown is no failure; an
    unexpected error is (``failure`` says what), and the MAX_ATTEMPTS-th fails the sub-job.
    A sub-job handed back while its job is being cancelled is cancelled at once."""
    with transaction.atomic():
        return _release(
            SubJob.objects.filter(pk=subjob_id, status=JobStatus.RUNNING, worker=worker),
            failure=failure,
        )


def subjob_release_expired(*, subjob_id: int, failure: str) -> bool:
    """The reaper takes back a sub-job whose lease expired (its worker is lost): one failure."""
    with transaction.atomic():
        return _release(
            SubJob.objects.filter(
                pk=subjob_id, status=JobStatus.RUNNING, lease_expires_at__lt=Now()
            ),
            failure=failure,
        )


def subjob_requeued(subjob_id: int) -> str:
    """Decide what a queued sub-job becomes: cancelled when its job is being cancelled, failed
    after MAX_ATTEMPTS failures, else it stays queued. Returns its status."""
    row = (
        SubJob.objects.filter(pk=subjob_id, status=JobStatus.NOT_STARTED)
        .values_list("job_id", "job__status", "failures", "error")
        .first()
    )
    if row is None:
        return SubJob.objects.values_list("status", flat=True).get(pk=subjob_id)
    job_id, job_status, failures, error = row
    if job_status in CANCELLED_JOB:
        subjob_cancel_queued(subjob_id)
        job_settle(job_id)
        return JobStatus.CANCELLED
    if failures >= settings.STAGING["MAX_ATTEMPTS"]:
        subjob_fail(subjob_id=subjob_id, error=error or f"failed {failures} times")
        job_settle(job_id)
        return JobStatus.FAILED
    return JobStatus.NOT_STARTED


def subjob_cancel_queued(subjob_id: int) -> bool:
    """NOT_STARTED → CANCELLED, with its items that had not ended."""
    moment = timezone.now()
    with transaction.atomic():
        moved = SubJob.objects.filter(pk=subjob_id, status=JobStatus.NOT_STARTED).update(
            status=JobStatus.CANCELLED, finished_at=moment
        )
        if moved:
            Item.objects.filter(subjob_id=subjob_id, status__in=ACTIVE_ITEM).update(
                status=JobStatus.CANCELLED, finished_at=moment
            )
    return bool(moved)


def subjob_cancel_expired(subjob_id: int) -> bool:
    """A sub-job of a cancelled job whose worker was lost: RUNNING (lease expired) → CANCELLED,
    and its job rolled up in the same transaction."""
    moment = timezone.now()
    with transaction.atomic():
        row = (
            SubJob.objects.select_for_update()
            .filter(pk=subjob_id, status=JobStatus.RUNNING, lease_expires_at__lt=Now())
            .values_list("job_id", flat=True)
            .first()
        )
        if row is None:
            return False
        SubJob.objects.filter(pk=subjob_id).update(
            status=JobStatus.CANCELLED, finished_at=moment, lease_expires_at=None
        )
        Item.objects.filter(subjob_id=subjob_id, status__in=ACTIVE_ITEM).update(
            status=JobStatus.CANCELLED, finished_at=moment
        )
        job_settle(row)
    return True


def subjob_fail(*, subjob_id: int, error: str) -> bool:
    """A queued sub-job that failed too often → FAILED, its unfinished items failed with the
    last error."""
    moment = timezone.now()
    with transaction.atomic():
        moved = SubJob.objects.filter(pk=subjob_id, status=JobStatus.NOT_STARTED).update(
            status=JobStatus.FAILED, finished_at=moment, error=error[:2000]
        )
        if moved:
            Item.objects.filter(subjob_id=subjob_id, status__in=ACTIVE_ITEM).update(
                status=JobStatus.FAILED, error=error[:2000], finished_at=moment
            )
    if moved:
        logger.warning("sub-job %s failed for good: %s", subjob_id, error)
    return bool(moved)


def _subjob_final(counts: dict, cancelled: bool) -> str:
    if cancelled:
        return JobStatus.CANCELLED
    return _outcome_of_items(counts) if counts["total"] else JobStatus.FINISHED


def subjob_finish(*, subjob_id: int, job_id: int, worker: str, cancelled: bool) -> str | None:
    """The holder ends its sub-job, and the job is rolled up, in ONE transaction: a crash
    cannot leave a job RUNNING whose sub-jobs are all over. Returns the sub-job's final status,
    or None when ``worker`` no longer held it."""
    moment = timezone.now()
    with transaction.atomic():
        try:
            subjob_hold(subjob_id=subjob_id, worker=worker)
        except LeaseLost:
            return None
        if cancelled:
            Item.objects.filter(subjob_id=subjob_id, status__in=ACTIVE_ITEM).update(
                status=JobStatus.CANCELLED, finished_at=moment
            )
        counts = Item.objects.filter(subjob_id=subjob_id).aggregate(
            total=Count("pk"),
            finished=Count("pk", filter=Q(status=JobStatus.FINISHED)),
            cancelled=Count("pk", filter=Q(status=JobStatus.CANCELLED)),
        )
        final = _subjob_final(counts, cancelled)
        SubJob.objects.filter(pk=subjob_id, status=JobStatus.RUNNING, worker=worker).update(
            status=final,
            finished_at=moment,
            lease_expires_at=None,
            bytes_per_second=0,
            files_done=counts["finished"],
            bytes_done=F("bytes_total") if final == JobStatus.FINISHED else F("bytes_done"),
        )
        job_settle(job_id)
    return final


# --- Items ------------------------------------------------------------------------------------


def item_begin_attempt(*, item_id: int, subjob_id: int, worker: str) -> bool:
    """Count one more attempt at an item that has not ended, by the holder of its sub-job's
    lease. False when the file was cancelled on its own since the sub-job read its items;
    LeaseLost when ``worker`` no longer holds the lease.

    The start is written with the attempt count, the one write every item gets when it begins:
    a progress report only sees the item in hand, so items that end between two reports would
    otherwise never record one."""
    counted = Item.objects.filter(
        pk=item_id,
        status__in=ACTIVE_ITEM,
        subjob_id__in=SubJob.objects.filter(
            pk=subjob_id, status=JobStatus.RUNNING, worker=worker
        ).values("pk"),
    ).update(attempts=F("attempts") + 1, started_at=Coalesce(F("started_at"), timezone.now()))
    if not counted:
        with transaction.atomic():
            subjob_hold(subjob_id=subjob_id, worker=worker)
    return bool(counted)


def items_finish(item_ids: Iterable[int]) -> int:
    return Item.objects.filter(pk__in=list(item_ids), status__in=ACTIVE_ITEM).update(
        status=JobStatus.FINISHED, bytes_done=F("size"), finished_at=timezone.now()
    )


def item_mark_running(*, item_id: int, bytes_done: int) -> int:
    """Filtered on status, so a file cancelled meanwhile stays cancelled."""
    return Item.objects.filter(pk=item_id, status__in=ACTIVE_ITEM).update(
        status=JobStatus.RUNNING,
        bytes_done=bytes_done,
        started_at=Coalesce(F("started_at"), timezone.now()),
    )


def item_fail(*, item_id: int, error: str) -> bool:
    return bool(
        Item.objects.filter(pk=item_id, status__in=ACTIVE_ITEM).update(
            status=JobStatus.FAILED, error=error[:2000], bytes_done=0, finished_at=timezone.now()
        )
    )


def items_cancel(*, job_id: int, paths: Iterable[str]) -> int:
    """Cancel files of a job on their own (WLCG tape cancel); ended files stay as they are."""
    return Item.objects.filter(job_id=job_id, path__in=list(paths), status__in=ACTIVE_ITEM).update(
        status=JobStatus.CANCELLED, finished_at=timezone.now()
    )


def items_reopen(*, item_ids: Iterable[int], subjob_id: int) -> int:
    """FAILED → NOT_STARTED under a new sub-job (a retry)."""
    return Item.objects.filter(pk__in=list(item_ids), status=JobStatus.FAILED).update(
        subjob_id=subjob_id, status=JobStatus.NOT_STARTED, error="", bytes_done=0, finished_at=None
    )
