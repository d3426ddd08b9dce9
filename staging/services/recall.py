"""The recall scheduler of a tape library: waiting files grouped by cartridge, a cartridge sent
to a drive once enough of it waits, each cartridge read once, in position order.

Dispatch side (``recall_choose``, called by each dispatcher pass for the stores whose library
has the scheduler on):

1. The waiting items of such a store are regrouped, per job, into one sub-job per cartridge
   (``SubJob.tape_vid``), moved out of the request-order sub-jobs they were created in. Only
   sub-jobs never dispatched are touched, inside the dispatcher's lock: no worker holds them.
2. A cartridge with sub-jobs in flight is *active*; at most ``drives`` are. The waiting sub-jobs
   of an active cartridge are dispatched at once (late arrivals join the read in progress).
3. A cartridge becomes eligible when ``min_files`` or ``min_bytes`` of it wait, when its oldest
   waiting file has waited ``max_wait``, or when it is still mounted in a drive (no mount to
   pay). Eligible cartridges take the free drives by priority, then fair share (the owner with
   the fewest sub-jobs in flight per weight), then a mounted one, then the most files waiting,
   then the oldest wait.

The worker side, reading a cartridge, is staging.services.cartridges."""

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Max, Sum
from django.utils import timezone

from staging.errors import ServiceError
from staging.models import Item, JobStatus, Store, StoreKind, SubJob
from staging.models_tape import TapeDrive, TapeLibrary
from staging.selectors_dispatch import DISPATCHED, UNCAPPED_TASKS, subjobs_waiting
from staging.tape_library import (
    group_of,
)

logger = logging.getLogger(__name__)

# Items regrouped by cartridge per store and pass: a million-file request is regrouped over
# several passes, the oldest first.
REGROUP_STEP = 20_000


def recall_libraries(stores: Iterable[Store] | None = None) -> dict[int, TapeLibrary]:
    """The libraries whose store's waiting work the recall scheduler dispatches, by store id.
    ``stores``: every store read with its library (``select_related("tape_library")``), when
    the caller read them already (else one query)."""
    if stores is not None:
        return {
            store.pk: store.tape_library
            for store in stores
            if store.kind == StoreKind.POSIX_TAPE
            and hasattr(store, "tape_library")
            and store.tape_library.scheduler
        }
    return {
        library.store_id: library
        for library in TapeLibrary.objects.filter(
            scheduler=True, store__kind=StoreKind.POSIX_TAPE
        ).select_related("store")
    }


# ---------------------------------------------------------------------------------------------
# Dispatch side


def _regroup(store: Store) -> int:
    """Move the waiting items of ``store`` that are not in a cartridge sub-job yet into one per
    job and cartridge; returns how many items moved."""
    waiting_plain = (
        subjobs_waiting()
        .filter(job__store=store, tape_vid="")
        .exclude(job__task__in=UNCAPPED_TASKS)
    )
    rows = list(
        Item.objects.filter(subjob__in=waiting_plain, status=JobStatus.NOT_STARTED)
        .order_by("pk")
        .values_list("pk", "job_id", "subjob_id", "size", "file_id", "path", "file__tape_vid")[
            :REGROUP_STEP
        ]
    )
    if not rows:
        return 0
    groups: dict[tuple[int, str], list[tuple[int, int]]] = defaultdict(list)
    emptied: set[int] = set()
    for pk, job_id, subjob_id, size, file_id, path, vid in rows:
        groups[(job_id, group_of(vid=vid or "", file_id=file_id, path=path))].append((pk, size))
        emptied.add(subjob_id)
    # Cartridge sub-jobs of these jobs still waiting take more of the same cartridge (a retry).
    existing = {
        (job_id, vid): pk
        for pk, job_id, vid in subjobs_waiting()
        .filter(job_id__in={job_id for job_id, _ in groups})
        .exclude(tape_vid="")
        .values_list("pk", "job_id", "tape_vid")
    }
    next_sequence = dict(
        SubJob.objects.filter(job_id__in={job_id for job_id, _ in groups})
        .values_list("job_id")
        .annotate(top=Max("sequence"))
    )
    created = []
    for job_id, vid in groups:
        if (job_id, vid) not in existing:
            next_sequence[job_id] += 1
            created.append(SubJob(job_id=job_id, sequence=next_sequence[job_id], tape_vid=vid))
    for subjob in SubJob.objects.bulk_create(created):
        existing[(subjob.job_id, subjob.tape_vid)] = subjob.pk
    for key, items in groups.items():
        Item.objects.filter(pk__in=[pk for pk, _ in items]).update(subjob_id=existing[key])
    _totals_refresh(set(existing.values()) | emptied)
    # The request-order sub-jobs left without items go: they were never handed out.
    SubJob.objects.filter(pk__in=emptied, dispatched_at__isnull=True, items__isnull=True).delete()
    return len(rows)


def _totals_refresh(subjob_ids: set[int]) -> None:
    totals = {
        row["subjob_id"]: row
        for row in Item.objects.filter(subjob_id__in=subjob_ids)
        .values("subjob_id")
        .annotate(files=Count("pk"), size=Sum("size"))
    }
    for pk in subjob_ids:
        row = totals.get(pk, {"files": 0, "size": 0})
        SubJob.objects.filter(pk=pk).update(files_total=row["files"], bytes_total=row["size"] or 0)


@dataclass
class CartridgeQueue:
    """The waiting work of one cartridge of a store, and why it waits."""

    vid: str
    files: int = 0
    bytes: int = 0
    oldest: datetime | None = None
    priority: int = 0
    owners: set = field(default_factory=set)
    subjobs: list[tuple[int, int | None]] = field(default_factory=list)  # (sub-job, owner)
    active: bool = False
    mounted: bool = False
    reason: str = ""

    def eligible(self, library: TapeLibrary, now: datetime) -> bool:
        if self.active or self.mounted:
            return True
        if self.files >= max(library.min_files, 1):
            return True
        if library.min_bytes and self.bytes >= library.min_bytes:
            return True
        return self.oldest is not None and now - self.oldest >= library.max_wait


def cartridge_queues(store: Store, library: TapeLibrary) -> dict[str, CartridgeQueue]:
    """The store's waiting cartridge sub-jobs grouped by cartridge, marked active (sub-jobs in
    flight) and mounted (in a drive)."""
    queues: dict[str, CartridgeQueue] = {}
    rows = (
        subjobs_waiting()
        .filter(job__store=store)
        .exclude(tape_vid="")
        .values_list(
            "pk",
            "tape_vid",
            "files_total",
            "bytes_total",
            "job__created_at",
            "job__priority",
            "job__owner_id",
        )
        .order_by("job__created_at", "pk")
    )
    for pk, vid, files, size, created, priority, owner_id in rows:
        queue = queues.setdefault(vid, CartridgeQueue(vid))
        queue.files += files
        queue.bytes += size
        queue.oldest = created if queue.oldest is None else min(queue.oldest, created)
        queue.priority = max(queue.priority, priority)
        queue.owners.add(owner_id)
        queue.subjobs.append((pk, owner_id))
    for vid in active_vids(store):
        queues.setdefault(vid, CartridgeQueue(vid)).active = True
    for vid in (
        TapeDrive.objects.filter(library=library)
        .exclude(mounted_vid="")
        .values_list("mounted_vid", flat=True)
    ):
        if vid in queues:
            queues[vid].mounted = True
    return queues


def active_vids(store: Store) -> set[str]:
    """Cartridges handed out and not read yet, or being read: with sub-jobs dispatched and not
    yet claimed, or a drive held for them. (Sub-jobs whose reads are over but whose ends are
    still being written hold no drive: the next cartridge may go.)"""
    unclaimed = (
        SubJob.objects.filter(DISPATCHED, job__store=store, status=JobStatus.NOT_STARTED)
        .exclude(tape_vid="")
        .values_list("tape_vid", flat=True)
        .distinct()
    )
    held = TapeDrive.objects.filter(
        library__store=store, lease_expires_at__gt=timezone.now()
    ).exclude(holder="")
    return set(unclaimed) | set(held.values_list("holder_vid", flat=True))


def recall_choose(capacity, libraries: dict[int, TapeLibrary], blocked: set[int]) -> None:
    """Add to ``capacity.chosen`` the cartridge sub-jobs to dispatch now (see the module)."""
    now = timezone.now()
    for store_id, library in libraries.items():
        if store_id in blocked:
            continue
        store = library.store
        _regroup(store)
        queues = cartridge_queues(store, library)
        active = [q for q in queues.values() if q.active]
        free_drives = library.drives - len(active)
        capacity.learn_owners({owner for q in queues.values() for owner in q.owners})
        chosen = list(active)
        waiting = [q for q in queues.values() if not q.active and q.subjobs]
        eligible = [q for q in waiting if q.eligible(library, now)]
        eligible.sort(
            key=lambda q: (
                -q.priority,
                min(capacity.share(owner) for owner in q.owners),
                not q.mounted,
                -q.files,  # the biggest batch first: most read per mount
                q.oldest,
            )
        )
        chosen += eligible[: max(free_drives, 0)]
        for queue in chosen:
            for pk, owner_id in queue.subjobs:
                _take_outside_bound(capacity, pk, store_id, owner_id)


def _take_outside_bound(capacity, pk: int, store_id: int, owner_id) -> None:
    """Dispatch a cartridge sub-job without spending the in-flight bound: the drives bound a
    library's work (one worker per active cartridge reads, the other deliveries return at once),
    and a cartridge's sub-jobs must all be handed out for its one read to gather them."""
    capacity.store_used[store_id] += 1
    capacity.owner_used[owner_id] += 1
    capacity.chosen.append(pk)


# ---------------------------------------------------------------------------------------------
# Settings

LIBRARY_FIELDS = {
    "drives": "drives",
    "mount_seconds": "mount seconds",
    "unmount_seconds": "unmount seconds",
    "locate_seconds_per_position": "locate seconds per position",
    "read_mb_per_second": "read MB/s",
    "min_files": "min files",
    "min_bytes": "min bytes",
}


def library_settings_check(*, kind: str, **fields) -> None:
    """Refuse settings a library cannot have, naming the setting and its range."""
    if kind != StoreKind.POSIX_TAPE:
        raise ServiceError(
            "only a posix-tape store has a tape library (add it with --kind posix-tape)",
            field="kind",
        )
    if fields.get("drives") is not None and fields["drives"] < 1:
        raise ServiceError("a tape library has at least 1 drive", field="drives")
    for name, label in LIBRARY_FIELDS.items():
        value = fields.get(name)
        if value is not None and value < 0:
            raise ServiceError(f"{label} cannot be negative (got {value})", field=name)
    if fields.get("read_mb_per_second") == 0:
        raise ServiceError("read MB/s must be above 0", field="read_mb_per_second")
    max_wait = fields.get("max_wait")
    if max_wait is not None and max_wait < timedelta(0):
        raise ServiceError("max wait cannot be negative", field="max_wait")


def library_configure(*, store: Store, **fields) -> TapeLibrary:
    """Give ``store`` a simulated tape library, or change its settings (fields left None keep
    theirs, or the defaults); applies at the next dispatch pass and the next drive taken."""
    library_settings_check(kind=store.kind, **fields)
    library, _ = TapeLibrary.objects.get_or_create(store=store)
    for name, value in fields.items():
        if value is not None:
            setattr(library, name, value)
    library.save()
    return library
