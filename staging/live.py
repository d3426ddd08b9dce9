"""What waiting requests (long polls, event streams) of one web process share: the watcher that
tells them when their job changed, and the thread budget that keeps them from starving ordinary
requests.

Why a watcher that polls, rather than a hook where statuses change or PostgreSQL's
LISTEN/NOTIFY: status and progress are written from many places (the transitions, progress
batches of the workers, the reaper, the admin) and by other processes, often by plain UPDATEs
that no hook sees; a trigger with NOTIFY would need a migration, a listening connection per
process and a second path for SQLite. One thread per web process instead reads the status
columns of every job someone waits on, in ONE indexed query, every WATCH_INTERVAL_SECONDS
(0.05 s) while anyone waits and not at all otherwise, and wakes the waiters whose job's
columns differ from what they last saw. The cost is one small query per interval per busy
process whatever the number of waiters; the delay is at most one interval. It works the same
on SQLite (`make run`) and PostgreSQL."""

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, connection, connections

from staging.selectors import JOB_STATUS_FIELDS, job_status_rows_by_pk

logger = logging.getLogger(__name__)


def watched_columns(row: dict) -> dict:
    """The columns of a status row that the watcher compares (those the row has: a DTS status
    row has the status only, so progress alone does not wake a DTS poll)."""
    return {name: row[name] for name in JOB_STATUS_FIELDS if name in row}


@dataclass(eq=False)
class _Waiter:
    job_id: int
    seen: dict
    woken: threading.Event = field(default_factory=threading.Event)


class JobWatcher:
    """Wakes waiting requests when their job's status columns change (see the module)."""

    def __init__(self):
        self._lock = threading.Condition()
        self._waiters: set[_Waiter] = set()
        self._thread: threading.Thread | None = None

    def wait_for_change(self, *, job_id: int, seen: dict, timeout: float) -> bool:
        """Block until job ``job_id``'s columns differ from ``seen`` (the columns of a row the
        caller read, see watched_columns) or the job is gone: True; or ``timeout`` passes:
        False. The caller reads the job again itself (with its visibility rule)."""
        waiter = _Waiter(job_id=job_id, seen=seen)
        with self._lock:
            self._waiters.add(waiter)
            self._ensure_thread()
            self._lock.notify()
        try:
            return waiter.woken.wait(max(timeout, 0))
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    def _ensure_thread(self) -> None:
        # Started on first use, in the serving process (gunicorn forks its workers after import).
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="job-watcher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        interval = settings.LIVE["WATCH_INTERVAL_SECONDS"]
        while True:
            with self._lock:
                while not self._waiters:
                    self._lock.wait()
                job_ids = {waiter.job_id for waiter in self._waiters}
            try:
                rows = job_status_rows_by_pk(job_ids=job_ids)
            except DatabaseError:
                # The database is away: waiters time out as usual; try again next interval.
                logger.warning("the job watcher could not read job statuses", exc_info=True)
                connection.close()
            else:
                self._wake_changed(rows)
            time.sleep(interval)

    def _wake_changed(self, rows: dict[int, dict]) -> None:
        with self._lock:
            for waiter in self._waiters:
                row = rows.get(waiter.job_id)
                if row is None or any(row[name] != value for name, value in waiter.seen.items()):
                    waiter.woken.set()


job_watcher = JobWatcher()


class ThreadBudget:
    """The threads of one web process, split between ordinary requests (at most
    ORDINARY_THREADS run at once; more wait for a turn) and waiting ones (at most CONNECTIONS;
    beyond that a request is served as an ordinary one, without waiting).

    Each ordinary turn owns its database connections and lends them to the thread that takes
    it. Django keeps a connection per thread (CONN_MAX_AGE), and gunicorn hands a request to
    any of its WEB_THREADS + LIVE_CONNECTIONS threads: without the loan, a burst of ordinary
    requests would leave a kept connection on every thread it touched (hundreds per process),
    where today there are WEB_THREADS. A thread already inside a transaction of its own (a
    test's) keeps its connection."""

    def __init__(self, *, ordinary: int, live: int):
        self._turns: queue.LifoQueue[OrdinaryTurn] = queue.LifoQueue()
        for _ in range(ordinary):
            self._turns.put(OrdinaryTurn(self._turns))
        self._live = threading.BoundedSemaphore(live) if live > 0 else None

    def ordinary_turn(self) -> "OrdinaryTurn":
        """One of the ordinary turns (waiting for it if all are taken), its connections lent
        to this thread until ``release``."""
        turn = self._turns.get()
        turn.lend()
        return turn

    def take_live(self) -> "LiveSlot | None":
        """A waiting slot if one is free (never blocks), else None."""
        if self._live is None or not self._live.acquire(blocking=False):
            return None
        return LiveSlot(self._live)


class OrdinaryTurn:
    def __init__(self, turns: queue.LifoQueue):
        self._turns = turns
        self._wrappers: dict[str, object] = {}
        self._lent: list[str] = []

    def lend(self) -> None:
        own = {wrapper.alias: wrapper for wrapper in connections.all(initialized_only=True)}
        for alias in connections:
            if alias in own and (own[alias].in_atomic_block or own[alias].allow_thread_sharing):
                continue
            if alias in own:
                own[alias].close()  # the thread's own, left by a waiting request
            wrapper = self._wrappers.get(alias)
            if wrapper is None:
                wrapper = self._wrappers[alias] = connections.create_connection(alias)
                # One thread at a time uses it (the turn's holder), but not always the same.
                wrapper.inc_thread_sharing()
            else:
                # What Django does at the start of every request (request_started), which ran
                # before this turn was lent.
                wrapper.close_if_unusable_or_obsolete()
            connections[alias] = wrapper
            self._lent.append(alias)

    def release(self) -> None:
        """Take the connections back from the thread, and the turn back to the budget."""
        for alias in self._lent:
            wrapper = connections[alias]
            if wrapper.in_atomic_block:  # never expected; never lend it on so
                wrapper.close()
            # What Django does at the end of every request (request_finished), which runs
            # after this turn is back: close it if broken, or older than CONN_MAX_AGE.
            wrapper.close_if_unusable_or_obsolete()
            del connections[alias]
        self._lent = []
        self._turns.put(self)


class LiveSlot:
    """One held waiting slot; ``release`` may be called any number of times, frees it once
    (and closes the thread's database connection: none is kept on a thread of the waiting
    share)."""

    def __init__(self, semaphore: threading.BoundedSemaphore):
        self._semaphore = semaphore
        self._held = True
        self._lock = threading.Lock()

    def release(self) -> None:
        release_database_connection()
        with self._lock:
            if self._held:
                self._held = False
                self._semaphore.release()


_budget: ThreadBudget | None = None
_budget_lock = threading.Lock()


def thread_budget() -> ThreadBudget:
    global _budget
    with _budget_lock:
        if _budget is None:
            live = settings.LIVE
            _budget = ThreadBudget(ordinary=live["ORDINARY_THREADS"], live=live["CONNECTIONS"])
        return _budget


def release_database_connection() -> None:
    """Before a request waits, and after a waiting request: close its thread's database
    connection, so that hundreds of waiting requests do not hold hundreds of connections (the
    next query opens one again)."""
    if not connection.in_atomic_block:
        connection.close()
