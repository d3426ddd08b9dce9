"""The dispatcher: the database is the queue, and the broker carries only what may run now.

A job's sub-jobs are created NOT_STARTED and undispatched (``dispatched_at`` empty). Each pass
of ``subjobs_dispatch`` hands the next ones to the broker as long as capacity allows: higher
``Job.priority`` first; within a priority, each slot to the owner with the fewest sub-jobs in
flight per unit of weight (``dispatch_weight``, default 1: owners served in turn); within an
owner, oldest first. A sub-job counts against capacity from its dispatch until it ends (queued
in the broker, running, or handed back and waiting to be published again). Capacity is three bounds
at once (``staging.selectors_dispatch.DispatchCapacity``, which the admin and ``/metrics`` read
too, to say why a sub-job waits):

- per store, ``Store.max_active`` (e.g. a tape library's drive count; blank: no limit);
- per owner, ``max_active_subjobs`` of the owner's account limits (blank: no limit);
- over everything, ``STAGING["DISPATCH_MAX_IN_FLIGHT"]`` (worker processes + a small prefetch),
  so the broker never holds more than that whatever waits in the database;
- and a store whose staging area is below its free-space watermark gets nothing
  (staging.services.staging_space).

Release jobs free space and take no drive: they never wait for capacity.
A pass that leaves a store (or the bound) full while an owner there is below its share asks
the owners above theirs to give way at a file boundary (staging.services.preemption).

A pass runs on beat every ``DISPATCH_INTERVAL_SECONDS``, whenever ``dispatch_wake`` is
called (a submission, a cancel, a new priority), and right in the worker process that ended a
sub-job (``dispatch_after_end``). Passes never overlap: each holds a
PostgreSQL advisory lock for its transaction (on SQLite the write lock its IMMEDIATE
transaction takes at BEGIN does the same), so two dispatchers cannot both fill the same free
slot. Limits are read at every pass: a change applies without a restart.
"""

import heapq
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable

from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Min
from django.utils import timezone
from psycopg.errors import LockNotAvailable

from staging.errors import ServiceError
from staging.models import Job, JobStatus, Store, SubJob
from staging.models_tape import TapeLibrary
from staging.selectors_dispatch import (
    UNCAPPED_TASKS,
    DispatchCapacity,
    OwnerLimits,
    jobs_with_capped_work_waiting,
    subjobs_in_flight,
    subjobs_waiting,
)
from staging.services.preemption import ALL, give_way_ask
from staging.services.publishing import subjobs_publish
from staging.services.recall import recall_choose, recall_libraries
from staging.services.staging_space import stores_full

logger = logging.getLogger(__name__)

DISPATCH_TASK = "tasks.maintenance.dispatch_waiting_subjobs"
# Set (if absent) by a wake that publishes a pass, deleted by the pass as it starts: a burst of
# wakes before a pass starts is that one pass, and a wake during a pass gets one more.
WAKE_KEY = "stagingsvc.dispatch-wake"
# A wake whose pass was lost with the broker's data leaves the key behind: it expires, and beat
# dispatches meanwhile.
WAKE_KEY_SECONDS = 30
# Any number that no other advisory lock of the database uses.
ADVISORY_LOCK_ID = 0x57A6_D15C
# How long the pass after a sub-job's end waits for another pass to release the lock before
# asking for a pass through the broker instead: a pass over 100,000 waiting sub-jobs takes
# about a third of that.
AFTER_END_LOCK_WAIT_MS = 200
# Waiting sub-jobs of one owner read at a time (a store found full is left out of the next read).
SCAN_STEP = 200


def _lock_dispatch(*, wait: bool = True, at_most_ms: int | None = None) -> bool:
    """Take the dispatcher's lock for the transaction; without ``wait``, False when another
    pass holds it; with ``at_most_ms``, waiting that long at most for it (and for any lock
    the rest of the transaction takes): past it, LockNotAvailable aborts the transaction.
    (SQLite: the IMMEDIATE transaction already holds the write lock.)"""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        if at_most_ms is not None:
            # One statement: the timeout is set before the lock's wait begins, and the one in
            # force before (read first: MATERIALIZED) is back once the lock is held (the target
            # list is evaluated in order). The rest of the pass waits for row locks as every
            # pass does: a timeout there would roll back task ids whose messages an earlier
            # batch already sent.
            cursor.execute(
                "WITH before AS MATERIALIZED (SELECT current_setting('lock_timeout') AS setting) "
                "SELECT set_config('lock_timeout', %s, true), pg_advisory_xact_lock(%s), "
                "set_config('lock_timeout', before.setting, true) FROM before",
                [f"{at_most_ms}ms", ADVISORY_LOCK_ID],
            )
            return True
        if wait:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK_ID])
            return True
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [ADVISORY_LOCK_ID])
        return cursor.fetchone()[0]


def subjobs_dispatch() -> int:
    """One pass: publish the waiting sub-jobs that capacity allows, by priority, fair share
    and age; returns how many were handed to the broker."""
    with transaction.atomic():
        _lock_dispatch()
        owners = OwnerLimits()  # read once for the choice and the give-way asks
        chosen = _choose(owners)
        published = subjobs_publish(subjob_ids=chosen) if chosen else 0
        give_way_ask(owners)  # where a store is still full, owners above their share make room
        return published


def subjobs_submitted(*, store_id: int, task: str) -> None:
    """Once a job's sub-jobs are committed: ask running sub-jobs to give way where a store is
    full, and wake the dispatcher unless the new sub-jobs cannot go anyway (their store, or
    everything, full). Such a pass would hand out nothing, and would take the first worker
    process that gives way, while the new sub-job waits for one; the pass that gives the slot
    is the one run by the sub-job giving way, after its end. The pass runs in a worker, not
    here: a submission stays a handful of queries whatever its size."""
    full = give_way_ask()
    if full is None or task in UNCAPPED_TASKS or not ({store_id, ALL} & full):
        dispatch_wake()


def dispatch_at_submission_possible(*, store: Store, task: str, subjobs: int) -> bool:
    """Whether a new job of ``subjobs`` sub-jobs of ``task`` on ``store`` (its row, read under
    the store's lock) may have its sub-job handed out by its submission
    (``subjob_dispatch_submitted``): one sub-job (its few items hold the dispatcher's lock
    briefly), counted against the limits, on a store without a staging-space watermark (whose
    pass also watches the free space), on PostgreSQL (SQLite serialises writers anyway)."""
    return (
        subjobs == 1
        and task not in UNCAPPED_TASKS
        and not store.free_space_low
        and connection.vendor == "postgresql"
    )


def subjob_dispatch_submitted(*, subjob_id: int, job: Job) -> str | None:
    """In the transaction submitting ``job``, once it holds the dispatcher's lock: record its
    one sub-job as dispatched when a pass would hand out that one and nothing else, i.e.
    nothing else waits (so priorities, fair shares and ages have nothing to choose between)
    and the in-flight bound, the store's limit and the owner's all have room; not for a tape
    library's store, whose work goes by cartridge. Returns the sub-job's task id, to publish
    once the transaction commits (``subjob_message_send``), or None: then the sub-job waits for
    a pass (``subjobs_submitted``). Saves the wake's message, the woken task and its pass."""
    store = job.store
    # Read now, not from what a token login remembered: a pass applies a limit an admin just
    # lowered at once, and so must this.
    owners = OwnerLimits()
    owners.learn([job.owner_id])
    _, owner_limit = owners.of(job.owner_id)
    waiting_sql, waiting_params = (
        subjobs_waiting().exclude(pk=subjob_id).values("pk").order_by().query.sql_with_params()
    )
    flight_sql, flight_params = (
        subjobs_in_flight()
        .values_list("job__store_id", "job__owner_id")
        .order_by()
        .query.sql_with_params()
    )
    task_id = str(uuid.uuid4())
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {SubJob._meta.db_table} SET celery_task_id = %s, dispatched_at = %s "
            "WHERE id = %s AND status = %s AND dispatched_at IS NULL "
            f"AND NOT EXISTS ({waiting_sql}) "
            f"AND NOT EXISTS (SELECT 1 FROM {TapeLibrary._meta.db_table} WHERE store_id = %s) "
            "AND (SELECT count(*) < %s "
            "AND (%s::integer IS NULL OR count(*) FILTER (WHERE f.store_id = %s) < %s) "
            "AND (%s::integer IS NULL OR count(*) FILTER (WHERE f.owner_id = %s) < %s) "
            f"FROM ({flight_sql}) AS f(store_id, owner_id))",
            [
                task_id,
                timezone.now(),
                subjob_id,
                JobStatus.NOT_STARTED,
                *waiting_params,
                store.pk,
                settings.STAGING["DISPATCH_MAX_IN_FLIGHT"],
                store.max_active,
                store.pk,
                store.max_active,
                owner_limit,
                job.owner_id,
                owner_limit,
                *flight_params,
            ],
        )
        return task_id if cursor.rowcount == 1 else None


def dispatch_after_end() -> None:
    """After a sub-job ended, in the worker process that ran it: a pass right here for the slot
    it freed, which saves a broker message and a task per sub-job over ``dispatch_wake``. When
    another pass (or a submission handing out its own sub-job) holds the lock, it may have
    counted the slot as taken: this pass waits for it, a short while as passes go
    (AFTER_END_LOCK_WAIT_MS), and follows it; past that, a wake, so a pass follows it anyway.
    A short wait spares the wake's message and the control worker's pass; a long one would
    idle this staging worker while ends queue behind a long pass (a large backlog). Never
    raises: a pass that fails here is asked of the broker instead."""
    try:
        # Most ends leave nothing waiting (a burst is over, or all was handed out): one index
        # probe, without the dispatcher's lock, instead of a pass. This end is committed, so
        # work that becomes waiting after this read finds the slot free: its submission hands
        # it out or wakes a pass. What a pass holding the lock now leaves waiting, it read
        # before this probe, which sees it waiting still.
        if not subjobs_waiting().exists():
            return
        with transaction.atomic():
            _lock_dispatch(at_most_ms=AFTER_END_LOCK_WAIT_MS)
            chosen = _choose()
            if chosen:
                subjobs_publish(subjob_ids=chosen)
            return
    except Exception as exc:
        # Another pass held the lock past the wait: no failure, its follower is woken.
        if not isinstance(exc.__cause__, LockNotAvailable):
            logger.warning(
                "dispatch pass after a sub-job's end failed; asking for one", exc_info=True
            )
    dispatch_wake()


def _choose(owners: OwnerLimits | None = None) -> list[int]:
    # Read once for the limits, the tape libraries and the staging-space watermarks.
    stores = list(Store.objects.select_related("tape_library"))
    capacity = DispatchCapacity(stores, owners)
    waiting = subjobs_waiting()
    chosen = list(
        waiting.filter(job__task__in=UNCAPPED_TASKS).order_by("pk").values_list("pk", flat=True)
    )
    # A tape library's work goes by cartridge (staging.services.recall), bounded by its drives.
    libraries = recall_libraries(stores)
    staging_full = stores_full(stores=stores) if libraries or capacity.room > 0 else set()
    if libraries:
        recall_choose(capacity, libraries, blocked=staging_full)
    if capacity.room <= 0:
        return chosen + capacity.chosen
    capped = waiting.exclude(job__task__in=UNCAPPED_TASKS).exclude(
        job__store_id__in=list(libraries)
    )
    full_stores = {pk for pk in capacity.store_limit if capacity.store_full(pk)}
    full_stores |= staging_full  # no room in the staging area
    # Who has work waiting, by priority: one row per (priority, owner), with the oldest job.
    levels: dict[int, dict[int | None, int]] = defaultdict(dict)
    queues = (
        jobs_with_capped_work_waiting()
        .exclude(store_id__in=full_stores | set(libraries))
        .values_list("priority", "owner_id")
        .annotate(oldest=Min("pk"))
    )
    for priority, owner_id, oldest in queues:
        levels[priority][owner_id] = oldest
    capacity.learn_owners(owner for owners in levels.values() for owner in owners)
    for priority in sorted(levels, reverse=True):
        if capacity.room <= 0:
            break
        _share_out(capacity, capped.filter(job__priority=priority), levels[priority], full_stores)
    return chosen + capacity.chosen


def _share_out(capacity, waiting, owners: dict, full_stores: set[int]) -> None:
    """Weighted fair share within one priority: each free slot goes to the owner with the
    fewest sub-jobs in flight per unit of weight (ties: the owner with the oldest job), and
    to that owner's oldest waiting sub-job on a store with room. So an owner who just
    submitted ten files is served at the next slot, whatever another owner has queued."""
    turns = []
    for owner_id, oldest in owners.items():
        if not capacity.owner_full(owner_id):
            heapq.heappush(turns, (capacity.share(owner_id), oldest, owner_id))
    queues = {owner_id: _OwnerQueue(waiting.filter(job__owner_id=owner_id)) for owner_id in owners}
    while capacity.room > 0 and turns:
        _, oldest, owner_id = heapq.heappop(turns)
        picked = queues[owner_id].next_with_room(capacity, full_stores)
        if picked is None:
            continue  # nothing more of this owner's can go now
        capacity.take(*picked, owner_id)
        if not capacity.owner_full(owner_id):
            heapq.heappush(turns, (capacity.share(owner_id), oldest, owner_id))


class _OwnerQueue:
    """One owner's waiting sub-jobs at one priority, oldest first, read a step at a time."""

    def __init__(self, waiting):
        self.waiting = waiting
        self.buffer: list[tuple[int, int]] = []
        self.after = 0
        self.exhausted = False

    def next_with_room(self, capacity, full_stores: set[int]) -> tuple[int, int] | None:
        """The oldest sub-job whose store has room: (pk, store id), or None."""
        while True:
            if not self.buffer:
                if self.exhausted:
                    return None
                self._read(full_stores)
                continue
            pk, store_id = self.buffer.pop(0)
            if store_id in full_stores:
                continue
            if capacity.store_full(store_id):
                full_stores.add(store_id)
                continue
            return pk, store_id

    def _read(self, full_stores: set[int]) -> None:
        step = list(
            self.waiting.exclude(job__store_id__in=full_stores)
            .filter(pk__gt=self.after)
            .order_by("pk")
            .values_list("pk", "job__store_id")[:SCAN_STEP]
        )
        self.exhausted = len(step) < SCAN_STEP
        if step:
            self.after = step[-1][0]
        self.buffer = step


def jobs_prioritize(*, job_ids: Iterable[int], priority: int) -> int:
    """Give jobs a new priority (1 to 5); their sub-jobs still waiting are handed out by it
    from the next pass on (those already dispatched keep their place). Returns how many jobs
    changed."""
    if not 1 <= priority <= 5:
        raise ServiceError("a priority is 1 (lowest) to 5 (highest)", field="priority")
    changed = (
        Job.objects.filter(pk__in=list(job_ids))
        .exclude(priority=priority)
        .update(priority=priority, updated_at=timezone.now())
    )
    if changed:
        transaction.on_commit(dispatch_wake)
    return changed


def dispatch_wake() -> None:
    """Ask for a dispatch pass soon (on the control queue). Never raises: when the broker is
    away, beat's next pass dispatches instead."""
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
            if conn.transport.driver_type == "redis":
                # Through kombu's client, so the key carries the broker's key prefix.
                client = conn.default_channel.client
                if not client.set(WAKE_KEY, "1", nx=True, ex=WAKE_KEY_SECONDS):
                    return  # a pass is already asked for and has not started yet
            current_app.send_task(DISPATCH_TASK, connection=conn)
    except Exception:
        logger.warning("could not wake the dispatcher; beat's next pass will dispatch")


def dispatch_woken() -> int:
    """A pass asked for by ``dispatch_wake`` (or by beat): forget the wake first, so a wake
    arriving during this pass asks for another, then dispatch."""
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
            if conn.transport.driver_type == "redis":
                conn.default_channel.client.delete(WAKE_KEY)
    except Exception:
        logger.warning("could not clear the dispatcher's wake key; it expires on its own")
    return subjobs_dispatch()
