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
import math
import queue
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, connection, connections

from staging.errors import BusyError
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


class NoTurnFree(BusyError):
    """No ordinary turn came free within TURN_WAIT_SECONDS: the request is answered 503."""

    def __init__(self, waited: float):
        super().__init__(
            f"Every request thread of this server stayed busy for {waited:g} seconds; the "
            "request was not carried out. Send it again after Retry-After seconds.",
            headers={"Retry-After": str(max(1, math.ceil(waited)))},
        )


class ThreadBudget:
    """The threads of one web process, split between ordinary requests (at most
    ORDINARY_THREADS run at once; more wait for a turn) and waiting ones (at most CONNECTIONS,
    and at most CONNECTIONS_PER_USER of one user; beyond that a request is served as an
    ordinary one, without waiting).

    Each ordinary turn owns its database connections and lends them to the thread that takes
    it. Django keeps a connection per thread (CONN_MAX_AGE), and gunicorn hands a request to
    any of its WEB_THREADS + LIVE_CONNECTIONS threads: without the loan, a burst of ordinary
    requests would leave a kept connection on every thread it touched (hundreds per process),
    where today there are WEB_THREADS. Waiting requests read the database on a turn too
    (LiveSlot.database_turn), never on a connection of their own: when a job changes and its
    hundreds of waiters read it again at once, they queue for the turns rather than open
    hundreds of connections. A thread already inside a transaction of its own (a test's)
    keeps its connection."""

    def __init__(self, *, ordinary: int, live: int, live_per_user: int, turn_wait: float):
        self._turns: queue.LifoQueue[OrdinaryTurn] = queue.LifoQueue()
        for _ in range(ordinary):
            self._turns.put(OrdinaryTurn(self._turns))
        self._turn_wait = turn_wait
        self._live = threading.BoundedSemaphore(live) if live > 0 else None
        self._live_per_user = live_per_user
        self._slots_of_user: dict[object, int] = {}
        self._users_lock = threading.Lock()

    def ordinary_turn(self) -> "OrdinaryTurn":
        """One of the ordinary turns (waiting up to TURN_WAIT_SECONDS for it if all are taken:
        else NoTurnFree), its connections lent to this thread until ``release``."""
        try:
            turn = self._turns.get(timeout=self._turn_wait)
        except queue.Empty:
            raise NoTurnFree(self._turn_wait) from None
        try:
            turn.lend()
        except BaseException:
            turn.release()  # a turn that failed to lend is not lost with the request
            raise
        return turn

    def take_live(self) -> "LiveSlot | None":
        """A waiting slot if one is free (never blocks), else None."""
        if self._live is None or not self._live.acquire(blocking=False):
            return None
        return LiveSlot(self, self._live)

    def claim_for_user(self, user_key) -> bool:
        """Count a held slot against its user: False (not counted) when the user already
        holds CONNECTIONS_PER_USER slots of this process."""
        with self._users_lock:
            held = self._slots_of_user.get(user_key, 0)
            if held >= self._live_per_user:
                return False
            self._slots_of_user[user_key] = held + 1
            return True

    def unclaim_for_user(self, user_key) -> None:
        with self._users_lock:
            held = self._slots_of_user.get(user_key, 0) - 1
            if held > 0:
                self._slots_of_user[user_key] = held
            else:
                self._slots_of_user.pop(user_key, None)


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
        """Take the connections back from the thread, and the turn back to the budget (even
        when closing a connection fails: a turn never lost is what keeps requests coming)."""
        try:
            for alias in self._lent:
                wrapper = connections[alias]
                if wrapper.in_atomic_block:  # never expected; never lend it on so
                    wrapper.close()
                # What Django does at the end of every request (request_finished), which runs
                # after this turn is back: close it if broken, or older than CONN_MAX_AGE.
                wrapper.close_if_unusable_or_obsolete()
        finally:
            for alias in self._lent:
                del connections[alias]
            self._lent = []
            self._turns.put(self)


class LiveSlot:
    """One held waiting slot. Its request reads the database only on an ordinary turn: it
    holds one while it runs (``take_turn``), lets it go while it waits (``off_turn``), and an
    event stream takes one for each read (``database_turn``). ``release`` may be called any
    number of times, frees the slot once (and closes the thread's database connection: none
    is kept on a thread of the waiting share)."""

    def __init__(self, budget: ThreadBudget, semaphore: threading.BoundedSemaphore):
        self._budget = budget
        self._semaphore = semaphore
        self._held = True
        self._claimed = False
        self._user_key = None  # whom it counts against, once claimed (None: anonymous)
        self._turn: OrdinaryTurn | None = None
        self._lock = threading.Lock()

    def claim_for(self, user) -> bool:
        """Count this slot against ``user`` (once): False when the user holds
        CONNECTIONS_PER_USER slots already; the request must then not wait."""
        if self._claimed:
            return True
        key = user.pk if user.is_authenticated else None
        if not self._budget.claim_for_user(key):
            return False
        self._claimed, self._user_key = True, key
        return True

    def take_turn(self) -> None:
        """Hold an ordinary turn (its connections lent to this thread) until ``drop_turn``."""
        if self._turn is None:
            self._turn = self._budget.ordinary_turn()

    def drop_turn(self) -> None:
        turn, self._turn = self._turn, None
        if turn is not None:
            turn.release()

    @contextmanager
    def off_turn(self):
        """Wait without a turn (nor any database connection), then hold one again."""
        self.drop_turn()
        release_database_connection()
        try:
            yield
        finally:
            self.take_turn()

    @contextmanager
    def database_turn(self):
        """Read the database on an ordinary turn's connections (see ThreadBudget), holding
        the turn only as long as the read."""
        if self._turn is not None:
            yield
            return
        self.take_turn()
        try:
            yield
        finally:
            self.drop_turn()

    def release(self) -> None:
        try:
            self.drop_turn()
            release_database_connection()
        finally:  # the slot comes back even when a connection fails to close
            with self._lock:
                if self._held:
                    self._held = False
                    self._semaphore.release()
                    if self._claimed:
                        self._budget.unclaim_for_user(self._user_key)


_budget: ThreadBudget | None = None
_budget_lock = threading.Lock()


def thread_budget() -> ThreadBudget:
    global _budget
    with _budget_lock:
        if _budget is None:
            live = settings.LIVE
            _budget = ThreadBudget(
                ordinary=live["ORDINARY_THREADS"],
                live=live["CONNECTIONS"],
                live_per_user=live["CONNECTIONS_PER_USER"],
                turn_wait=live["TURN_WAIT_SECONDS"],
            )
        return _budget


def release_database_connection() -> None:
    """Before a request waits, and after a waiting request: close its thread's database
    connection, so that hundreds of waiting requests do not hold hundreds of connections (the
    next query opens one again)."""
    if not connection.in_atomic_block:
        connection.close()
