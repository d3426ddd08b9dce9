"""What the tape libraries are doing, for the admin and ``/metrics``: per library its drives
(what each holds and reads), its cartridges' queues and why each waits, and its counters. The
eligibility rules are the scheduler's own (``staging.services.recall.CartridgeQueue``)."""

from dataclasses import dataclass, field

from django.utils import timezone

from staging.models_tape import TapeDrive, TapeLibrary
from staging.services.recall import CartridgeQueue, cartridge_queues

# Cartridges listed per library on the admin page: the next to go are what an operator needs.
CARTRIDGES_SHOWN = 20


@dataclass
class DriveView:
    number: int
    mounted_vid: str
    holder: str
    reading_vid: str
    reading_path: str
    head_position: int
    busy: bool


@dataclass
class LibraryView:
    library: TapeLibrary
    drives: list[DriveView]
    queues: list[CartridgeQueue]
    more_cartridges: int = 0
    totals: dict = field(default_factory=dict)

    @property
    def bytes_per_mount(self) -> float:
        mounts = self.totals.get("mounts") or 0
        return self.totals.get("bytes_read", 0) / mounts if mounts else 0.0


def queue_reason(queue: CartridgeQueue, library: TapeLibrary, *, free_drives: int, now) -> str:
    """Why a cartridge's files wait, in words ("3 of 10 files; oldest 40 s of 5 min")."""
    if queue.active:
        return "being read"
    if queue.eligible(library, now):
        if queue.mounted:
            return "mounted: read at the next pass"
        if free_drives <= 0:
            return "eligible: next when a drive frees"
        return "eligible: mounted at the next pass"
    waited = int((now - queue.oldest).total_seconds()) if queue.oldest else 0
    parts = [f"{queue.files} of {library.min_files} files"]
    if library.min_bytes:
        parts.append(f"{queue.bytes:,} of {library.min_bytes:,} bytes")
    parts.append(f"oldest {waited} s of {int(library.max_wait.total_seconds())} s")
    return "waiting for more: " + "; ".join(parts)


def tape_overview() -> list[LibraryView]:
    now = timezone.now()
    views = []
    for library in TapeLibrary.objects.select_related("store").order_by("store__slug"):
        drives = [
            DriveView(
                number=d.number,
                mounted_vid=d.mounted_vid,
                holder=d.holder,
                reading_vid=d.holder_vid,
                reading_path=d.reading_path,
                head_position=d.head_position,
                busy=bool(d.holder) and d.lease_expires_at is not None and d.lease_expires_at > now,
            )
            for d in TapeDrive.objects.filter(library=library, number__lte=library.drives)
        ]
        queues = list(cartridge_queues(library.store, library).values())
        queues.sort(key=lambda q: (not q.active, not q.eligible(library, now), -q.files))
        # The free drives go to the eligible cartridges in this order (the scheduler's, less
        # priorities and fair share): the first take them, the rest wait for one.
        free = library.drives - sum(q.active for q in queues)
        for queue in queues:
            queue.reason = queue_reason(queue, library, free_drives=free, now=now)
            if not queue.active and queue.eligible(library, now):
                free -= 1
        totals = {name: 0 for name in ("mounts", "bytes_read", "files_read")}
        totals |= {"seek_seconds": 0.0, "mount_seconds": 0.0}
        for row in TapeDrive.objects.filter(library=library).values(*totals):
            for name in totals:
                totals[name] += row[name]
        views.append(
            LibraryView(
                library=library,
                drives=drives,
                queues=queues[:CARTRIDGES_SHOWN],
                more_cartridges=max(0, len(queues) - CARTRIDGES_SHOWN),
                totals=totals,
            )
        )
    return views
