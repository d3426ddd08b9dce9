"""Running a tape library's cartridge sub-job (one with a ``tape_vid``, dispatched by the recall
scheduler, staging.services.recall): the worker takes the drive the cartridge is in, or a free
one (``staging.tape_library``). When another worker holds the cartridge's drive, it does nothing:
that worker gathers this sub-job before it lets the drive go. The holder claims every dispatched
sub-job of the cartridge (each under its own lease, as any sub-job), reads all their items in
position order, looks again for late arrivals, gives the drive back and only then writes each
sub-job's end. So leases, the reaper, the reconciler, cancels and deadlines hold as for any
sub-job: each item ends exactly once, through its own sub-job."""

import bisect
import contextlib
import time
from dataclasses import dataclass, field

from django.db import transaction

from staging.models import PENDING_STATUSES, File, Item, JobStatus, Store, SubJob
from staging.models_tape import TapeDrive, TapeLibrary
from staging.services.dispatch import dispatch_after_end
from staging.services.execution import (
    LeaseHeartbeat,
    ProgressReporter,
    item_run,
    stage_file_copy,
    subjob_claim,
    subjob_interrupted,
    subjob_lease_given_up,
)
from staging.services.transitions import LeaseLost
from staging.storage import StagingCancelled
from staging.tape_library import (
    BUSY,
    DRIVE_POLL_SECONDS,
    drive_acquire,
    drive_mount,
    drive_read,
    drive_release,
    library_of,
)


@dataclass
class _Claimed:
    subjob: SubJob
    reporter: object
    pending: list = field(default_factory=list)
    # Set when its run stopped: an unexpected error, or the copy in hand stopped (a deadline).
    error: BaseException | None = None
    in_hand: Item | None = None
    stopped: bool = False


def cartridge_run(*, subjob_id: int, worker: str, task_id: str) -> str | None:
    """Run a cartridge sub-job with the tape library (see the module): this one and every other
    dispatched sub-job of its cartridge, in position order, on one drive. Returns this sub-job's
    final status when this worker ran it, else None."""
    row = SubJob.objects.select_related("job__store").get(pk=subjob_id)
    store, vid = row.job.store, row.tape_vid
    library = library_of(store)
    drive = _drive_wait(library, vid, worker, subjob_id)
    if drive is None:
        return None  # the cartridge's holder reads it, or it is over
    finals: dict[int, str | None] = {}
    claimed: list[_Claimed] = []
    with contextlib.ExitStack() as leases:
        try:
            # The sub-jobs waiting are claimed while the cartridge mounts, and what was dispatched
            # for it meanwhile joins them before the first file is read.
            mounting = time.monotonic()
            mount = drive_mount(library=library, drive=drive, worker=worker, vid=vid, sleep=False)
            first = _gather(store, vid, worker, task_id, stack=leases)
            claimed += first
            time.sleep(max(0.0, mount.total - (time.monotonic() - mounting)))
            _read_cartridge(
                _Cartridge(library, store, vid, drive, worker, task_id, leases, claimed), first
            )
        except BaseException as exc:
            # A warm shutdown, the drive lost, the database gone: every sub-job goes back.
            drive_release(drive=drive, worker=worker)
            for entry in claimed:
                subjob_interrupted(entry.subjob.pk, worker, entry.reporter, exc)
            raise
        drive_release(drive=drive, worker=worker)
        dispatch_after_end()  # the drive is free: the next cartridge may go now
        for entry in claimed:
            finals[entry.subjob.pk] = _end(entry, worker)
    dispatch_after_end()
    return finals.get(subjob_id)


def _drive_wait(library: TapeLibrary, vid: str, worker: str, subjob_id: int):
    """A drive for ``vid``, waiting while every drive is held; None when another worker holds
    the cartridge's drive or the sub-job no longer waits for anyone."""
    while True:
        got = drive_acquire(library=library, vid=vid, worker=worker)
        if got == BUSY:
            return None
        if got is not None:
            return got
        if not SubJob.objects.filter(
            pk=subjob_id, status=JobStatus.NOT_STARTED, dispatched_at__isnull=False
        ).exists():
            return None
        time.sleep(DRIVE_POLL_SECONDS)


def _gather(store, vid, worker, task_id, *, stack) -> list[_Claimed]:
    """Claim every dispatched, unclaimed sub-job of the cartridge, each with its heartbeat."""
    ids = list(_dispatched_unclaimed(store, vid).order_by("pk").values_list("pk", flat=True))
    batch = []
    for pk in ids:
        claimed_at = time.monotonic()
        subjob = subjob_claim(subjob_id=pk, worker=worker, task_id=task_id)
        if subjob is None:
            continue
        heartbeat = stack.enter_context(
            LeaseHeartbeat(subjob_id=pk, worker=worker, claimed_at=claimed_at)
        )
        reporter = ProgressReporter(subjob=subjob, worker=worker, heartbeat=heartbeat)
        pending = [i for i in subjob.claimed_items if i.status in PENDING_STATUSES]
        batch.append(_Claimed(subjob, reporter, pending))
    positions = dict(
        File.objects.filter(
            pk__in={i.file_id for entry in batch for i in entry.pending if i.file_id}
        ).values_list("pk", "tape_position")
    )
    for entry in batch:
        for item in entry.pending:
            item.tape_position = positions.get(item.file_id)
    return batch


def _dispatched_unclaimed(store, vid):
    return SubJob.objects.filter(
        job__store=store, tape_vid=vid, status=JobStatus.NOT_STARTED, dispatched_at__isnull=False
    )


def _nothing_left(library, store, vid, drive, worker) -> bool:
    """Under the library's lock (as ``drive_acquire`` takes it), whether no dispatched sub-job of
    the cartridge waits to be read; when none does, the drive is let go in the same transaction,
    so a sub-job dispatched after this finds the drive free and takes it itself."""
    with transaction.atomic():
        TapeLibrary.objects.select_for_update().filter(pk=library.pk).exists()
        waiting = SubJob.objects.filter(
            job__store=store,
            tape_vid=vid,
            status=JobStatus.NOT_STARTED,
            dispatched_at__isnull=False,
        ).exists()
        if not waiting:
            drive_release(drive=drive, worker=worker)
        return not waiting


@dataclass
class _Cartridge:
    library: TapeLibrary
    store: Store
    vid: str
    drive: TapeDrive
    worker: str
    task_id: str
    leases: contextlib.ExitStack
    claimed: list


# While reading, how often the holder looks for sub-jobs of its cartridge dispatched since.
LOOK_SECONDS = 0.25
# Looks in a row that find dispatched sub-jobs but claim none (another worker's claim racing
# ours) before the drive is given up anyway.
EMPTY_LOOKS = 20


def _read_cartridge(cartridge: _Cartridge, first: list[_Claimed]) -> None:
    """Read every pending item of the claimed sub-jobs as an elevator does: the nearest file at
    or past the head next, back to the start of the cartridge once none is ahead. Sub-jobs
    dispatched meanwhile (late arrivals) are claimed every LOOK_SECONDS and their files join the
    sweep (those ahead of the head in this pass, the others in the next); once nothing is left
    the drive is let go (``_nothing_left``). Each item goes through its own sub-job's reporter:
    a sub-job cancelled, past its deadline or whose lease is lost stops alone."""
    c = cartridge
    keys: list[tuple[int, int]] = []  # (position, item id), sorted
    by_key: dict[tuple[int, int], tuple[_Claimed, Item]] = {}

    def take(entries: list[_Claimed]) -> None:
        for entry in entries:
            for item in entry.pending:
                key = (_position(item), item.pk)
                bisect.insort(keys, key)
                by_key[key] = (entry, item)

    def work(item, store, reporter):
        drive_read(
            library=c.library,
            drive=c.drive,
            worker=c.worker,
            vid=c.vid,
            position=item.tape_position,
            size=item.size,
            path=item.path,
        )
        stage_file_copy(item, store, reporter)

    take(first)
    looked, empty_looks = time.monotonic(), 0
    while True:
        if not keys or time.monotonic() - looked >= LOOK_SECONDS:
            joined = _gather(c.store, c.vid, c.worker, c.task_id, stack=c.leases)
            c.claimed += joined
            take(joined)
            looked = time.monotonic()
        if not keys:
            if _nothing_left(c.library, c.store, c.vid, c.drive, c.worker):
                return
            empty_looks += 1
            if empty_looks >= EMPTY_LOOKS:
                drive_release(drive=c.drive, worker=c.worker)
                return
            time.sleep(DRIVE_POLL_SECONDS)
            continue
        empty_looks = 0
        at = bisect.bisect_left(keys, (c.drive.head_position, -1))
        entry, item = by_key.pop(keys.pop(at if at < len(keys) else 0))
        reporter = entry.reporter
        if entry.stopped or item.pk in reporter.cancelled_items:
            continue
        if reporter.should_stop():
            entry.stopped = True
            continue
        try:
            item_run(item, entry.subjob.job.store, reporter, work)
        except StagingCancelled:
            entry.stopped, entry.in_hand = True, item
        except LeaseLost:
            entry.stopped = True  # its end hands it back, or writes nothing


def _position(item: Item) -> int:
    position = getattr(item, "tape_position", None)
    return -1 if position is None else position


def _end(entry: _Claimed, worker: str) -> str | None:
    """Write one sub-job's end, as subjob_run does for a sub-job of its own: its files not read
    by its deadline fail, and a lost lease writes nothing."""
    reporter, subjob_id = entry.reporter, entry.subjob.pk
    try:
        stopped = entry.stopped and not reporter.cancelled and not reporter.lease_lost()
        if stopped and reporter.deadline_passed():
            done = set(reporter.ran) | set(reporter.outcomes.finished)
            done |= set(reporter.outcomes.failed)
            left = [i for i in entry.pending if i.pk not in done]
            reporter.items_past_deadline(left, in_hand=entry.in_hand)
        return reporter.finish()
    except LeaseLost:
        subjob_lease_given_up(subjob_id, worker)
        return None
    except Exception as exc:
        subjob_interrupted(subjob_id, worker, reporter, exc)
        return None
    finally:
        reporter.sync.close()
        reporter.directories.close()
