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
        │  │  │  ◄─────────────────────────  RUNNING: subjob_give_way, at a file boundary, for
        │  │  │    another owner's fair share (no failure; undispatched: holds no slot)
        │  │  └─ subjob_cancel_queued (its job is CANCELLING) ──► CANCELLED
        │  ├──── subjob_fail (MAX_ATTEMPTS failures) ──► FAILED, with the last error
        │  └──── subjobs_fail_past_deadline (its job's deadline passed) ──► FAILED
        └─────── subjob_requeued decides between those two for any queued sub-job

Item::

      NOT_STARTED ─► RUNNING ─► FINISHED | FAILED | CANCELLED (items_cancel: on its own)
           ▲            │
           └────────────┘ its sub-job handed back or reaped (the bytes it copied taken back)
      FAILED ─► NOT_STARTED (items_reopen, a retry)
      NOT_STARTED ─► FAILED "deadline exceeded" (subjobs_fail_past_deadline, with its sub-job)

Every move of a job into RUNNING or a terminal status also writes, in its own transaction, the
webhook deliveries it owes (``_job_moved``; staging.services.webhooks), so a crash can never
leave a job ended and its listeners untold.

Worker-side writes are fenced by the lease holder: ``subjob_hold`` locks the sub-job row only
while the writer still holds the lease, so no other worker can take it over until that
transaction ends, and a writer that lost it gets LeaseLost and writes nothing.
"""

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections, transaction
from django.db.models import (
    BigIntegerField,
    Case,
    Count,
    DateTimeField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    PositiveIntegerField,
    Q,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from staging.models import TERMINAL_STATUSES, Item, Job, JobStatus, Pin, SubJob
from staging.services.webhooks import deliveries_for_job_status, job_has_webhook_targets

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


def _job_moved(job_id: int, status: str, *, listened: bool | None = None) -> None:
    """What every move of a job into RUNNING or a terminal status owes, in its transaction: the
    webhook deliveries (so none is lost between the move and a crash). ``listened``: whether
    anything listens to the job, when the caller read it already."""
    deliveries_for_job_status(job_id, status, listened=listened)


def job_created_ended(job_id: int, status: str) -> None:
    """A job created already in a terminal status (a tape request none of whose files is in
    the archive) owes what a move into that status owes."""
    _job_moved(job_id, status)


def job_mark_running(job_id: int, *, listened: bool | None = None) -> bool:
    """NOT_STARTED → RUNNING. ``listened``: whether anything listens to the job's webhooks, when
    the caller read it already (staging.services.webhooks.job_listened)."""
    now = timezone.now()
    moving = Job.objects.filter(pk=job_id, status=JobStatus.NOT_STARTED)
    changes = {"status": JobStatus.RUNNING, "started_at": now, "updated_at": now}
    # A job nobody listens to moves in one statement, as a sub-job's start is on every
    # worker's path; an endpoint registered in the instant between that reading and the move
    # misses this one job.started.
    if listened is None:
        listened = job_has_webhook_targets(job_id)
    if not listened:
        return bool(moving.update(**changes))
    with transaction.atomic():
        moved = moving.update(**changes)
        if moved:
            _job_moved(job_id, JobStatus.RUNNING)
    return bool(moved)


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


def _settled(final: str, counts: dict, moment) -> dict:
    """The columns of a job that ends in ``final`` with these item counts."""
    return {
        "status": final,
        "finished_at": moment,
        "files_done": counts["finished"],
        "files_failed": counts["failed"],
        "bytes_done": counts["bytes_done"],
        "result": {
            "files_finished": counts["finished"],
            "files_failed": counts["failed"],
            "files_cancelled": counts["cancelled"],
        },
        "updated_at": moment,
    }


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
            **_settled(final, counts, moment)
        )
        if not moved:
            # Moved under us inside this transaction (it is locked against anyone else): decide
            # again from what it is now.
            return job_settle(job_id)
        _job_moved(job_id, final)
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


def _release(running, *, failure: str, undispatch: bool = False) -> bool:
    """RUNNING → NOT_STARTED for the one sub-job ``running`` selects (False when it was not
    RUNNING as expected); the bytes its running items had copied are taken back from the
    counters (they will be copied again), and its queued fate decided (subjob_requeued).
    ``undispatch``: it gives its slot back too, and waits for the dispatcher again."""
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
        **({"dispatched_at": None} if undispatch else {}),
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


def subjob_give_way(*, subjob_id: int, worker: str) -> bool:
    """The holder stops at a file boundary to give its slot to another owner's waiting work
    (staging.services.preemption): back to NOT_STARTED *undispatched*, holding no slot, so the
    dispatcher hands it out again when its owner's share allows. No failure; its finished items
    stay finished. Fenced by the lease like every worker's write."""
    with transaction.atomic():
        return _release(
            SubJob.objects.filter(pk=subjob_id, status=JobStatus.RUNNING, worker=worker),
            failure="",
            undispatch=True,
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


def subjobs_fail_past_deadline(*, job_ids: Iterable[int], error: str) -> int:
    """Every queued sub-job (waiting in the database or dispatched to the broker) of these
    jobs → FAILED with ``error``, and their unfinished items with it, in three statements
    however many there are. The sub-jobs are locked first, so a worker's claim racing this
    either took one before (it is RUNNING and left to its worker) or finds it FAILED. Returns
    how many failed; the caller rolls the jobs up."""
    moment = timezone.now()
    with transaction.atomic():
        queued = SubJob.objects.filter(job_id__in=list(job_ids), status=JobStatus.NOT_STARTED)
        subjob_ids = list(queued.select_for_update().values_list("pk", flat=True))
        if not subjob_ids:
            return 0
        Item.objects.filter(subjob_id__in=subjob_ids, status__in=ACTIVE_ITEM).update(
            status=JobStatus.FAILED, error=error[:2000], bytes_done=0, finished_at=moment
        )
        return SubJob.objects.filter(pk__in=subjob_ids, status=JobStatus.NOT_STARTED).update(
            status=JobStatus.FAILED, finished_at=moment, error=error[:2000]
        )


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


# --- A worker's batches -----------------------------------------------------------------------


@dataclass
class ItemOutcomes:
    """How the items a worker ran since its last write ended, written in one statement:
    finished and failed items with the attempts each took (an attempt is counted when its item
    ends, so a worker lost mid-item counts none for it), when the batch began (the start of its
    items that have none yet), and the pins to stamp with the archive version (mtime, size) the
    staged copy of a path holds."""

    started_at: datetime = field(default_factory=timezone.now)
    finished: dict[int, int] = field(default_factory=dict)
    failed: dict[int, tuple[int, str]] = field(default_factory=dict)
    stamps: dict[str, tuple[datetime, int]] = field(default_factory=dict)
    # Failed items the worker never began (their deadline passed first): no start time.
    unstarted: set[int] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.finished) + len(self.failed)


def items_record(*, subjob_id: int, outcomes: ItemOutcomes, moment: datetime) -> int:
    """RUNNING/NOT_STARTED → FINISHED | FAILED for a batch of a sub-job's items, in one UPDATE;
    an item cancelled on its own meanwhile stays cancelled. Returns how many moved. Callers
    fence it by the lease: the sub-job row is locked by its holder in the same transaction
    (``subjob_progress``), or the transaction is undone unless the holder's final write of the
    sub-job succeeds (``subjob_finish_known``)."""
    if not outcomes:
        return 0
    if connections[Item.objects.db].vendor == "postgresql":
        return _items_record_unnest(subjob_id, outcomes, moment)
    by_attempts: dict[int, list[int]] = defaultdict(list)
    for item_id, attempts in outcomes.finished.items():
        by_attempts[attempts].append(item_id)
    for item_id, (attempts, _) in outcomes.failed.items():
        by_attempts[attempts].append(item_id)
    values = {
        "attempts": Case(
            *(When(pk__in=ids, then=F("attempts") + n) for n, ids in by_attempts.items()),
            default=F("attempts"),
            output_field=PositiveIntegerField(),
        ),
        "started_at": Coalesce(F("started_at"), Value(outcomes.started_at)),
        "finished_at": moment,
        "status": JobStatus.FINISHED,
        "bytes_done": F("size"),
    }
    if outcomes.unstarted:
        values["started_at"] = Case(
            When(pk__in=list(outcomes.unstarted), then=F("started_at")),
            default=values["started_at"],
        )
    if outcomes.failed:
        failed = list(outcomes.failed)
        values["status"] = Case(
            When(pk__in=failed, then=Value(JobStatus.FAILED)), default=Value(JobStatus.FINISHED)
        )
        values["bytes_done"] = Case(
            When(pk__in=failed, then=Value(0)), default=F("size"), output_field=BigIntegerField()
        )
        values["error"] = Case(
            *(When(pk=i, then=Value(error[:2000])) for i, (_, error) in outcomes.failed.items()),
            default=Value(""),
        )
    return Item.objects.filter(
        pk__in=[*outcomes.finished, *outcomes.failed], subjob_id=subjob_id, status__in=ACTIVE_ITEM
    ).update(**values)


def _items_record_unnest(subjob_id: int, outcomes: ItemOutcomes, moment: datetime) -> int:
    """items_record on PostgreSQL: the batch as arrays joined by ``unnest``, so the statement
    is the same few parameters whether it holds one item or a thousand (Django's CASE and IN
    cost it time per item, and PostgreSQL a list to search per row)."""
    # As the general way's CASE: a batch with failures clears the error of its finished items.
    cleared = "" if outcomes.failed else None
    rows = [(pk, n, JobStatus.FINISHED, cleared, True) for pk, n in outcomes.finished.items()]
    rows += [
        (pk, n, JobStatus.FAILED, error[:2000], pk not in outcomes.unstarted)
        for pk, (n, error) in outcomes.failed.items()
    ]
    ids, attempts, statuses, errors, began = (list(column) for column in zip(*rows, strict=True))
    connection = connections[Item.objects.db]
    table = connection.ops.quote_name(Item._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS i SET attempts = i.attempts + v.attempts, "
            "started_at = CASE WHEN v.began THEN COALESCE(i.started_at, %s) "
            "ELSE i.started_at END, "
            "finished_at = %s, status = v.status, "
            "bytes_done = CASE WHEN v.status = %s THEN i.size ELSE 0 END, "
            "error = COALESCE(v.error, i.error) "
            "FROM unnest(%s::bigint[], %s::integer[], %s::varchar[], %s::text[], %s::boolean[]) "
            "AS v(id, attempts, status, error, began) "
            "WHERE i.id = v.id AND i.subjob_id = %s AND i.status = ANY(%s)",
            [
                outcomes.started_at,
                moment,
                JobStatus.FINISHED,
                ids,
                attempts,
                statuses,
                errors,
                began,
                subjob_id,
                list(ACTIVE_ITEM),
            ],
        )
        return cursor.rowcount


# Up to this many stamps go into the same UPDATE as the pins' lifetimes (a CASE per path);
# more are joined from a VALUES list in an UPDATE of their own (CASEs cost Django time per path).
PIN_STAMPS_INLINE = 8


def pins_record(
    *, job_id: int, stamps: dict[str, tuple[datetime, int]], ready_until: datetime | None = None
) -> int:
    """The archive version (mtime, size) each staged copy in ``stamps`` holds, on the job's
    pins of those paths; with ``ready_until`` also the end of the lifetime of every pin not
    released (the job just became ready). One UPDATE, or two for a large batch of stamps
    (elsewhere than on PostgreSQL)."""
    if connections[Pin.objects.db].vendor == "postgresql":
        return _pins_record_unnest(job_id, stamps, ready_until)
    if ready_until is None or len(stamps) > PIN_STAMPS_INLINE:
        _pins_stamp_joined(job_id, stamps)
        stamps = {}
    if ready_until is None:
        return 0
    values = {
        "expires_at": Case(
            When(released_at__isnull=True, then=Value(ready_until)), default=F("expires_at")
        )
    }
    if stamps:
        values["source_mtime"] = Case(
            *(When(path=path, then=Value(mtime)) for path, (mtime, _) in stamps.items()),
            default=F("source_mtime"),
            output_field=DateTimeField(),
        )
        values["source_size"] = Case(
            *(When(path=path, then=Value(size)) for path, (_, size) in stamps.items()),
            default=F("source_size"),
            output_field=BigIntegerField(),
        )
    return Pin.objects.filter(job_id=job_id).update(**values)


def _pins_record_unnest(
    job_id: int, stamps: dict[str, tuple[datetime, int]], ready_until: datetime | None
) -> int:
    """pins_record on PostgreSQL, always one UPDATE: the stamps as arrays joined by path
    (a VALUES list of a thousand rows can be planned as a loop over the job's pins), and
    with ``ready_until`` every pin of the job, stamped or not, in the same pass over its rows."""
    if not stamps and ready_until is None:
        return 0
    connection = connections[Pin.objects.db]
    table = connection.ops.quote_name(Pin._meta.db_table)
    stamped = "unnest(%s::text[], %s::timestamptz[], %s::bigint[]) AS v(path, mtime, size)"
    arrays = [list(stamps), [m for m, _ in stamps.values()], [s for _, s in stamps.values()]]
    with connection.cursor() as cursor:
        if ready_until is None:
            cursor.execute(
                f"UPDATE {table} AS p SET source_mtime = v.mtime, source_size = v.size "
                f"FROM {stamped} WHERE p.job_id = %s AND p.path = v.path",
                [*arrays, job_id],
            )
            return 0
        cursor.execute(
            f"UPDATE {table} AS p SET "
            "expires_at = CASE WHEN p.released_at IS NULL THEN %s ELSE p.expires_at END, "
            "source_mtime = COALESCE(v.mtime, p.source_mtime), "
            "source_size = COALESCE(v.size, p.source_size) "
            f"FROM {table} AS q LEFT JOIN {stamped} ON v.path = q.path "
            "WHERE p.id = q.id AND q.job_id = %s",
            [ready_until, *arrays, job_id],
        )
        return cursor.rowcount


def _pins_stamp_joined(job_id: int, stamps: dict[str, tuple[datetime, int]]) -> None:
    """Stamps joined from a VALUES list (PostgreSQL and SQLite both name its columns
    column1..3 and take UPDATE ... FROM)."""
    if not stamps:
        return
    connection = connections[Pin.objects.db]
    adapt = connection.ops.adapt_datetimefield_value
    table = connection.ops.quote_name(Pin._meta.db_table)
    rows = ", ".join(["(%s, %s, CAST(%s AS bigint))"] * len(stamps))
    params = [
        value for path, (mtime, size) in stamps.items() for value in (path, adapt(mtime), size)
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET source_mtime = v.column2, source_size = v.column3 "
            f"FROM (VALUES {rows}) AS v WHERE {table}.job_id = %s AND {table}.path = v.column1",
            [*params, job_id],
        )


def subjob_progress(
    *,
    subjob_id: int,
    job_id: int,
    worker: str,
    outcomes: ItemOutcomes,
    bytes_done: int,
    bytes_per_second: float,
    running: tuple[int, int, datetime] | None = None,
) -> tuple[int, str | None, set[int]]:
    """A holder's progress report, in one transaction: the lease renewed, the batch's item
    outcomes and pin stamps, the item in hand (id, bytes so far, start) marked RUNNING, the
    counters of sub-job and job. Returns (items that moved, the job's status now, the
    sub-job's items cancelled on their own); LeaseLost (nothing written) once ``worker`` no
    longer holds the sub-job."""
    moment = timezone.now()
    with transaction.atomic():
        renewed = SubJob.objects.filter(
            pk=subjob_id, status=JobStatus.RUNNING, worker=worker
        ).update(
            lease_expires_at=lease_deadline(),
            files_done=F("files_done") + len(outcomes.finished),
            bytes_done=F("bytes_done") + bytes_done,
            bytes_per_second=bytes_per_second,
        )
        if not renewed:
            raise LeaseLost(f"sub-job {subjob_id} is no longer leased to {worker}")
        # The row lock the UPDATE above took fences the writes below.
        moved = items_record(subjob_id=subjob_id, outcomes=outcomes, moment=moment)
        if running is not None:
            item_id, item_bytes, started_at = running
            Item.objects.filter(pk=item_id, status__in=ACTIVE_ITEM).update(
                status=JobStatus.RUNNING,
                bytes_done=item_bytes,
                started_at=Coalesce(F("started_at"), Value(started_at)),
            )
        if outcomes.stamps:
            pins_record(job_id=job_id, stamps=outcomes.stamps)
        done = moved - len(outcomes.failed) if moved == len(outcomes) else None
        if done is None:  # some item was cancelled on its own meanwhile: count what moved
            done = Item.objects.filter(
                pk__in=list(outcomes.finished), status=JobStatus.FINISHED, finished_at=moment
            ).count()
        Job.objects.filter(pk=job_id).update(
            files_done=F("files_done") + done,
            bytes_done=F("bytes_done") + bytes_done,
            updated_at=moment,
        )
        status = Job.objects.filter(pk=job_id).values_list("status", flat=True).first()
        # Files cancelled on their own (the tape API's cancel) since: the worker skips them.
        cancelled = set(
            Item.objects.filter(subjob_id=subjob_id, status=JobStatus.CANCELLED).values_list(
                "pk", flat=True
            )
        )
    return moved, status, cancelled


class OutcomesDisagree(Exception):
    """The database does not hold the items as the worker believed (one was cancelled on its
    own meanwhile): nothing was written; the worker finishes the general way."""


def _job_settle_known(
    job_id: int, counts: dict, moment: datetime, *, listened: bool | None = None
) -> str | None:
    """job_settle for a job whose item counts the caller knows (its one sub-job was just
    finished in this transaction): one compare-and-set UPDATE, taken only when no other
    sub-job of the job is active and the job is not being cancelled. None when it did not
    apply (then job_settle decides, with the job row locked)."""
    # Not being cancelled (the UPDATE below checks), with items: decided like job_settle.
    final = _job_final(JobStatus.RUNNING, counts, set())
    active_sibling = SubJob.objects.filter(job_id=OuterRef("pk")).exclude(
        status__in=TERMINAL_STATUSES
    )
    moved = (
        Job.objects.filter(pk=job_id, status__in=[JobStatus.NOT_STARTED, JobStatus.RUNNING])
        .filter(~Exists(active_sibling))
        .update(
            **_settled(final, counts, moment),
            started_at=Coalesce(F("started_at"), Value(moment)),
        )
    )
    if not moved:
        return None
    _job_moved(job_id, final, listened=listened)
    return final


def subjob_finish_known(
    *,
    subjob_id: int,
    job_id: int,
    worker: str,
    outcomes: ItemOutcomes,
    counts: dict,
    bytes_done: int,
    job_counts: dict | None,
    lifetime: timedelta,
    listened: bool | None = None,
) -> str | None:
    """subjob_finish for a holder that knows how every item of its sub-job ended (it read
    their statuses when it claimed the sub-job and ran the rest), writing its last batch in
    the same transaction: the items, the sub-job, the job roll-up and the pins. With
    ``job_counts`` (the sub-job holds all of the job's items) the roll-up is one UPDATE; it
    falls back to job_settle when another sub-job or a cancel is in the way. Fenced by the
    sub-job's final UPDATE: when ``worker`` no longer holds the lease the whole transaction is
    undone and None returned. OutcomesDisagree (nothing written) when an item moved meanwhile.
    ``listened``: whether anything listened to the job's webhooks at the claim. It stands for
    the end of a job of one sub-job, so that job's end costs no query of its own; an endpoint
    registered while that sub-job runs hears from the owner's next jobs (docs/api.md)."""
    moment = timezone.now()
    try:
        with transaction.atomic():
            if items_record(subjob_id=subjob_id, outcomes=outcomes, moment=moment) != len(outcomes):
                raise OutcomesDisagree()
            final = _subjob_final(counts, cancelled=False)
            held = SubJob.objects.filter(
                pk=subjob_id, status=JobStatus.RUNNING, worker=worker
            ).update(
                status=final,
                finished_at=moment,
                lease_expires_at=None,
                bytes_per_second=0,
                files_done=counts["finished"],
                bytes_done=(
                    F("bytes_total")
                    if final == JobStatus.FINISHED
                    else F("bytes_done") + bytes_done
                ),
            )
            if not held:
                raise LeaseLost(f"sub-job {subjob_id} is no longer leased to {worker}")
            stamps = outcomes.stamps
            if job_counts is None and stamps:
                # Before the job row is written: the sub-jobs of one job that end together
                # wait for each other's roll-up on that row, not for each other's pins too.
                pins_record(job_id=job_id, stamps=stamps)
                stamps = {}
            settled = None
            if job_counts is not None:
                settled = _job_settle_known(job_id, job_counts, moment, listened=listened)
            if settled is None:
                Job.objects.filter(pk=job_id).update(
                    files_done=F("files_done") + len(outcomes.finished),
                    bytes_done=F("bytes_done") + bytes_done,
                    updated_at=moment,
                )
                job_settle(job_id)  # its own pin update when the job became ready
                ready_until = None
            else:
                ready = settled in (JobStatus.FINISHED, JobStatus.PARTIALLY_FAILED)
                ready_until = moment + lifetime if ready else None
            if stamps or ready_until is not None:
                pins_record(job_id=job_id, stamps=stamps, ready_until=ready_until)
    except LeaseLost:
        return None
    return final
