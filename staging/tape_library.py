"""The simulated tape library of a ``posix-tape`` store (staging.models_tape): its drives, held
by one worker at a time under a lease, and what a read costs.

What it models: a fixed number of drives; mounting a cartridge (after unmounting the one a
drive holds), locating from the head's position to the file's (a cost per position, in either
direction), and reading at a fixed rate; the time is spent by sleeping. What it does not: robot
arm contention, tape wear, rewinds at unmount, read errors, compression, or several files per
position. The bytes themselves come from the archive directory, as for any POSIX store."""

import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from staging.models import File, Store, StoreKind
from staging.models_tape import TapeDrive, TapeLibrary

# The cartridge group of a file no tape location is known for: a group of its own.
NO_VID_PREFIX = "no-vid:"
# How often a worker asks again for a drive while the one it needs is held.
DRIVE_POLL_SECONDS = 0.05


class DriveLost(Exception):
    """The drive's lease passed to another worker (this one was too slow to renew it)."""


def library_of(store: Store) -> TapeLibrary | None:
    try:
        return store.tape_library
    except TapeLibrary.DoesNotExist:
        return None


def group_of(*, vid: str, file_id: str | None, path: str) -> str:
    """The cartridge a file is read from; a file of unknown location is its own group."""
    return vid or f"{NO_VID_PREFIX}{file_id or File.id_for('', path)}"


def drives_ensure(library: TapeLibrary) -> None:
    """One drive row per configured drive (rows beyond the count are left alone, unused)."""
    have = set(library.drive_rows.values_list("number", flat=True))
    TapeDrive.objects.bulk_create(
        (
            TapeDrive(library=library, number=n)
            for n in range(1, library.drives + 1)
            if n not in have
        ),
        ignore_conflicts=True,
    )


def _lease() -> timedelta:
    return timedelta(seconds=settings.STAGING["LEASE_SECONDS"])


def _live() -> Q:
    return ~Q(holder="") & Q(lease_expires_at__gt=timezone.now())


# What drive_acquire found.
BUSY = "busy"  # another worker holds the drive the cartridge is in: it reads this work too


def drive_acquire(*, library: TapeLibrary, vid: str, worker: str) -> TapeDrive | str | None:
    """Take a drive for cartridge ``vid``: the one it is mounted in when free; else a free
    drive, empty ones first, then the one idle longest. ``BUSY`` when another worker holds the
    cartridge's drive; None when every drive is held (try again)."""
    drives_ensure(library)
    with transaction.atomic():
        # One worker at a time picks a drive of this library.
        TapeLibrary.objects.select_for_update().filter(pk=library.pk).exists()
        drives = list(
            TapeDrive.objects.filter(library=library, number__lte=library.drives).order_by("number")
        )
        live = set(TapeDrive.objects.filter(_live(), library=library).values_list("pk", flat=True))
        for drive in drives:
            if drive.pk in live and vid in (drive.holder_vid, drive.mounted_vid):
                return drive if drive.holder == worker else BUSY
        free = [d for d in drives if d.pk not in live]
        if not free:
            return None
        mounted = [d for d in free if d.mounted_vid == vid]
        chosen = mounted[0] if mounted else min(free, key=lambda d: (d.mounted_vid != "", d.pk))
        TapeDrive.objects.filter(pk=chosen.pk).update(
            holder=worker,
            holder_vid=vid,
            lease_expires_at=timezone.now() + _lease(),
            reading_path="",
        )
        chosen.refresh_from_db()
        return chosen


def drive_release(*, drive: TapeDrive, worker: str) -> None:
    """Write what the drive did and give it back; its cartridge stays mounted until a read of
    another one needs it."""
    unwritten = drive.__dict__.pop("unwritten", None) or Counter()
    TapeDrive.objects.filter(pk=drive.pk, holder=worker).update(
        holder="",
        holder_vid="",
        lease_expires_at=None,
        reading_path="",
        mounted_vid=drive.mounted_vid,
        head_position=drive.head_position,
        **{name: F(name) + unwritten[name] for name in DRIVE_COUNTERS},
    )


@dataclass(frozen=True)
class ReadCost:
    unmount: float
    mount: float
    locate: float
    read: float

    @property
    def total(self) -> float:
        return self.unmount + self.mount + self.locate + self.read


def read_cost(
    library: TapeLibrary, *, mounted: str, head: int, vid: str, position: int | None, size: int
) -> ReadCost:
    """What reading a file costs a drive that holds ``mounted`` with its head at ``head``."""
    mount = unmount = 0.0
    if mounted != vid:
        unmount = library.unmount_seconds if mounted else 0.0
        mount = library.mount_seconds
        head = 0
    locate = 0.0
    if position is not None:
        locate = abs(position - head) * library.locate_seconds_per_position
    read = size / (library.read_mb_per_second * 1_000_000)
    return ReadCost(unmount, mount, locate, read)


# A held drive's row is written at a mount and at most this often otherwise (what it reads,
# its head, its counters, its lease), not at every file: a cartridge's files are read in a row.
DRIVE_WRITE_SECONDS = 1.0


def drive_read(
    *,
    library: TapeLibrary,
    drive: TapeDrive,
    worker: str,
    vid: str,
    position: int | None,
    size: int,
    path: str,
    sleep: bool = True,
) -> ReadCost:
    """Mount, locate and read one file on the held drive, sleeping the modelled time (unless
    not ``sleep``: the caller spends it, e.g. on its bookkeeping while the cartridge mounts). The
    drive's row (its cartridge, head, counters, and its lease renewed for the time the read
    takes) is written before a mount, and otherwise once DRIVE_WRITE_SECONDS have passed; the
    rest waits on the object until ``drive_release``. Raises DriveLost when another worker
    holds the drive now."""
    cost = read_cost(
        library,
        mounted=drive.mounted_vid,
        head=drive.head_position,
        vid=vid,
        position=position,
        size=size,
    )
    # After a read the head rests just past the file.
    if position is not None:
        drive.head_position = position + 1
    elif cost.mount:
        drive.head_position = 0
    drive.mounted_vid = vid
    unwritten = drive.__dict__.setdefault("unwritten", Counter())
    unwritten["mounts"] += 1 if cost.mount else 0
    unwritten["bytes_read"] += size
    unwritten["files_read"] += 1 if path else 0
    unwritten["seek_seconds"] += cost.locate
    unwritten["mount_seconds"] += cost.mount + cost.unmount
    written = drive.__dict__.get("written_at", 0.0)
    if cost.mount or time.monotonic() - written >= DRIVE_WRITE_SECONDS:
        _drive_write(drive, worker, reading=path, ahead=cost.total)
    if sleep and cost.total:
        time.sleep(cost.total)
    return cost


def _drive_write(drive: TapeDrive, worker: str, *, reading: str, ahead: float = 0.0) -> None:
    unwritten = drive.__dict__.get("unwritten") or Counter()
    moved = TapeDrive.objects.filter(pk=drive.pk, holder=worker).update(
        mounted_vid=drive.mounted_vid,
        head_position=drive.head_position,
        reading_path=reading,
        lease_expires_at=timezone.now() + _lease() + timedelta(seconds=ahead),
        **{name: F(name) + unwritten[name] for name in DRIVE_COUNTERS},
    )
    if not moved:
        raise DriveLost(f"drive {drive.number} is no longer held by {worker}")
    unwritten.clear()
    drive.written_at = time.monotonic()


DRIVE_COUNTERS = ("mounts", "bytes_read", "files_read", "seek_seconds", "mount_seconds")


def drive_mount(
    *, library: TapeLibrary, drive: TapeDrive, worker: str, vid: str, sleep: bool = True
) -> ReadCost:
    """Mount ``vid`` in the held drive if it is not there (no read): the time of an unmount and
    a mount, or nothing."""
    return drive_read(
        library=library,
        drive=drive,
        worker=worker,
        vid=vid,
        position=None,
        size=0,
        path="",
        sleep=sleep,
    )


def store_library(store: Store) -> TapeLibrary | None:
    """``library_of`` remembered on the store object (a worker asks for every item)."""
    if store.kind != StoreKind.POSIX_TAPE:
        return None
    if not hasattr(store, "_library_checked"):
        store._library_checked = library_of(store)
    return store._library_checked


def tape_read_for_copy(item, store: Store, *, worker: str) -> bool:
    """Read ``item`` through the store's simulated library, for a sub-job the recall scheduler
    did not build (the scheduler off: request order): a drive taken for this one file, waiting
    while the cartridge's drive or every drive is held. False when the store has no library."""
    library = store_library(store)
    if library is None:
        return False
    file = File.objects.filter(pk=item.file_id).values_list("tape_vid", "tape_position").first()
    vid, position = file if file else ("", None)
    vid = group_of(vid=vid, file_id=item.file_id, path=item.path)
    while True:
        drive = drive_acquire(library=library, vid=vid, worker=worker)
        if isinstance(drive, TapeDrive):
            break
        time.sleep(DRIVE_POLL_SECONDS)
    try:
        drive_read(
            library=library,
            drive=drive,
            worker=worker,
            vid=vid,
            position=position,
            size=item.size,
            path=item.path,
        )
    finally:
        drive_release(drive=drive, worker=worker)
    return True
