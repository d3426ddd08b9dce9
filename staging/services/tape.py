"""Writes of the WLCG Tape REST API: stage requests by path, cancel or release some of their
files, delete a request. A stage request is a Job (``source="tape"``) on the same engine as every
other dialect; what the dialect needs beyond the engine lives under ``Job.parameters["tape"]``:

- ``prefix`` and ``aliases``: how the client named the files, so answers echo its paths (gfal2
  matches answers to its files by path). A file's client path is ``f"{prefix}/{item.path}"``
  unless ``aliases[item.path]`` says otherwise.
- ``targetedMetadata``: per client path, the metadata the client addressed to our sitename.
- ``deleted_at``: set by DELETE. The request then answers 404 everywhere in this API, but the row
  stays: its pins cascade with it, and the sweeper finds staged copies only through pins, so
  deleting the row would leave its copies on disk for ever; the row also keeps the job's history
  for staff until retention purges it with the other old jobs. (A key in ``parameters`` rather
  than a new column keeps this dialect free of schema changes.)
"""

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from staging.errors import ConflictError, ServiceError
from staging.models import DEFAULT_PRIORITY, PENDING_STATUSES, Item, Job, JobStatus, Store, SubJob
from staging.selectors import TAPE_SOURCE
from staging.services import transitions
from staging.services.catalogue import catalogue_files_register
from staging.services.deadlines import deadline_columns, deadline_parse
from staging.services.dispatch import dispatch_wake
from staging.services.jobs import job_cancel
from staging.services.releases import job_release
from staging.services.staging_jobs import staging_job_create, staging_rows_of_paths
from staging.storage import UnsafePathError, resolve_under
from staging.tape_namespace import TapePath, tape_path_map, tape_paths_map, tape_stores

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageFile:
    """One entry of a stage request's ``files``."""

    path: str
    disk_lifetime: timedelta | None = None
    metadata: dict | None = None  # what targetedMetadata holds for our own sitename


class _RequestDescription:
    """What a stage request keeps beside its items (see the module docstring), gathered file by
    file in request order: its store, how the client named the files, the metadata addressed
    to us, and its lifetime (a job pins all its files for one: the longest any file asked for,
    capped). A file named twice counts once."""

    def __init__(self) -> None:
        self.store: Store | None = None
        self.prefix = ""
        self.aliases: dict[str, str] = {}
        self.metadata: dict[str, dict] = {}
        self.longest: timedelta | None = None
        self.relatives: set[str] = set()
        self.priority = DEFAULT_PRIORITY  # a job has one: the highest any file asked for
        # And one deadline: the longest any file asked for, so no file gives up before it
        # said; None: the store's default.
        self.deadline: timedelta | None = None

    def add(self, mapped: TapePath, file: StageFile, *, where: str = "") -> bool:
        """Take in one file; False if the request named it already."""
        if self.store is None:
            self.store = mapped.store
            self.prefix = f"/{mapped.store.slug}" if mapped.names_store else ""
        elif mapped.store.pk != self.store.pk:
            named = ", ".join(sorted({self.store.slug, mapped.store.slug}))
            raise ServiceError(
                f"{where + ': ' if where else ''}all files of one stage request must be in one "
                f"store; this one names {named}",
                field="files",
            )
        if file.disk_lifetime and (self.longest is None or file.disk_lifetime > self.longest):
            self.longest = file.disk_lifetime
        if file.metadata and "priority" in file.metadata:
            self.priority = max(self.priority, file.metadata["priority"])
        if file.metadata and file.metadata.get("deadline") is not None:
            deadline = deadline_parse(file.metadata["deadline"], field="deadline")
            self.deadline = max(self.deadline or deadline, deadline)
        if mapped.relative in self.relatives:
            return False
        self.relatives.add(mapped.relative)
        if mapped.client != f"{self.prefix}/{mapped.relative}":
            self.aliases[mapped.relative] = mapped.client
        if file.metadata is not None:
            self.metadata[mapped.client] = file.metadata
        return True

    @property
    def lifetime(self) -> timedelta | None:
        return min(self.longest, settings.STAGING["MAX_LIFETIME"]) if self.longest else None

    @property
    def parameters(self) -> dict:
        parameters: dict = {"prefix": self.prefix, "aliases": self.aliases}
        if self.metadata:
            parameters["targetedMetadata"] = self.metadata
        return {"tape": parameters}


def _why_not_stageable(store: Store, relative: str) -> str:
    try:
        target = resolve_under(store.archive_root, relative)
        is_directory = target.is_dir()
    except UnsafePathError:
        return "the path leads outside the store"
    except OSError:
        # A name the filesystem cannot look up (too long, say) names no file either.
        return "no such file in the archive"
    return "the path is a directory" if is_directory else "no such file in the archive"


@transaction.atomic
def stage_request_create(*, owner, files: Sequence[StageFile]) -> Job:
    """Create a stage request. Files in the archive are staged by the job engine; a path that
    is no file in the archive does not spoil the rest: its item is FAILED at once, with why."""
    if not files:
        raise ServiceError("a stage request needs at least one file", field="files")
    mapped = tape_paths_map(paths=[f.path for f in files])
    stores = {m.store.slug for m in mapped}
    if len(stores) > 1:
        raise ServiceError(
            f"all files of one stage request must be in one store; this one names "
            f"{', '.join(sorted(stores))}",
            field="files",
        )
    request = _RequestDescription()
    relatives = [m.relative for m, f in zip(mapped, files, strict=True) if request.add(m, f)]
    found = catalogue_files_register(store=request.store, paths=relatives)
    present = [found[relative] for relative in relatives if relative in found]
    missing = [relative for relative in relatives if relative not in found]
    create = partial(staging_job_create, files=present) if present else None
    return _stage_request_write(owner=owner, request=request, create=create, missing=missing)


@transaction.atomic
def stage_request_create_streamed(*, owner, files: Iterable[tuple[str, StageFile]]) -> Job:
    """``stage_request_create`` for a request too big to hold: ``files`` come as they are read
    (each with ``where`` it is, for errors: ``line 3``), are mapped as they come and read into
    the database and catalogued by ``staging_rows_of_paths``; the web process keeps the names
    it has seen (to stage a file named twice once) and the files that are not in the archive
    (FAILED items). A path the tape API refuses is a 400 naming where it is."""
    stores, primary = tape_stores()
    request = _RequestDescription()

    def relatives() -> Iterator[tuple[str, str]]:
        for where, file in files:
            try:
                mapped = tape_path_map(file.path, stores=stores, primary=primary)
            except ServiceError as exc:
                raise ServiceError(f"{where}: {exc.detail}", field="files") from exc
            if request.add(mapped, file, where=where):
                yield where, mapped.relative

    # The store is known once the first file is mapped, before the files are looked up.
    rows = staging_rows_of_paths(relatives(), store=lambda: request.store)
    missing = [relative for _, relative in rows.unknown]
    if request.store is None:
        raise ServiceError("a stage request needs at least one file", field="files")
    create = partial(staging_job_create, rows=rows) if rows.files_total else None
    return _stage_request_write(owner=owner, request=request, create=create, missing=missing)


def _stage_request_write(
    *,
    owner,
    request: _RequestDescription,
    create: Callable[..., Job] | None,
    missing: Sequence[str],
) -> Job:
    """The request's job (by ``create``, ``staging_job_create`` given the request's owner,
    store, lifetime and parameters; without one, nothing is to be staged, so nothing will ever
    run: the request is born FAILED) and a FAILED item, with why, for each ``missing`` path."""
    store = request.store
    now = timezone.now()
    if create is not None:
        job = create(
            owner=owner,
            store=store,
            source=TAPE_SOURCE,
            lifetime=request.lifetime,
            parameters=request.parameters,
        )
        deadline = deadline_columns(job, request.deadline)
        # Before the commit that wakes the dispatcher: its first pass sees the priority.
        Job.objects.filter(pk=job.pk).update(
            files_total=F("files_total") + len(missing), priority=request.priority, **deadline
        )
    else:
        job = Job.objects.create(
            task="stage",
            store=store,
            owner=owner,
            source=TAPE_SOURCE,
            parameters=request.parameters,
            lifetime=request.lifetime or settings.STAGING["DEFAULT_LIFETIME"],
            status=JobStatus.FAILED,
            files_total=len(missing),
            files_failed=len(missing),
            result={"files_finished": 0, "files_failed": len(missing), "files_cancelled": 0},
            error="none of the files is in the archive",
            finished_at=now,
        )
    Item.objects.bulk_create(
        Item(
            job=job,
            path=relative,
            status=JobStatus.FAILED,
            error=_why_not_stageable(store, relative),
            finished_at=now,
        )
        for relative in missing
    )
    if create is None:
        transitions.job_created_ended(job.pk, JobStatus.FAILED)
    job.refresh_from_db()
    return job


def _request_paths(job: Job, paths: Sequence[str]) -> list[str]:
    """The store paths of ``paths``; a path that is not a file of this request is a 400."""
    mapped = tape_paths_map(paths=paths)
    relatives = [m.relative for m in mapped if m.store.pk == job.store_id]
    in_request = set(
        Item.objects.filter(job=job, path__in=relatives).values_list("path", flat=True)
    )
    unknown = [
        m.client for m in mapped if m.store.pk != job.store_id or m.relative not in in_request
    ]
    if unknown:
        raise ServiceError(
            f"{len(unknown)} of {len(paths)} paths are not part of stage request {job.uuid}: "
            f"{', '.join(unknown[:20])}",
            field="paths",
            extra={"unknown_paths": unknown},
        )
    return list(dict.fromkeys(relatives))


def stage_request_cancel(*, job: Job, paths: Sequence[str]) -> int:
    """Cancel some files of a request (all-or-nothing on the paths: one that is not in the
    request is a 400 and nothing changes). Files already over are left as they are. Returns how
    many files were cancelled.

    Queued files are CANCELLED at once (compare-and-set), and a queued sub-job left with nothing
    to do is cancelled with them; a worker skips cancelled files of a sub-job it is running. When
    no file of the request is left uncancelled, the request itself is cancelled."""
    relatives = _request_paths(job, paths)
    cancelled = transitions.items_cancel(job_id=job.pk, paths=relatives)
    if not cancelled:
        return 0
    if not Item.objects.filter(job=job).exclude(status=JobStatus.CANCELLED).exists():
        with contextlib.suppress(ConflictError):  # it ended meanwhile: nothing left to stop
            job_cancel(job=job)
        return cancelled
    emptied = SubJob.objects.filter(job=job, status=JobStatus.NOT_STARTED).exclude(
        items__status__in=PENDING_STATUSES
    )
    freed = 0
    for subjob_id in emptied.values_list("pk", flat=True):
        # A delivery of a cancelled sub-job does nothing: its claim fails.
        freed += transitions.subjob_cancel_queued(subjob_id)
    if freed:
        transaction.on_commit(dispatch_wake)  # their slots are free: fill them now
    transitions.job_settle(job.pk)
    return cancelled


def stage_request_release(*, job: Job, paths: Sequence[str]) -> int:
    """Drop the request's pins on ``paths`` (all of them files of the request, else 400)."""
    return job_release(job=job, paths=_request_paths(job, paths))


def stage_requests_release_for_owner(*, owner, paths: Sequence[str]) -> int:
    """Drop the pins that the owner's own stage requests hold on ``paths``: a release that names
    no request (gfal2 sends a placeholder id when its user gives none)."""
    released = 0
    by_store: dict[int, list[str]] = {}
    for mapped in tape_paths_map(paths=paths):
        by_store.setdefault(mapped.store.pk, []).append(mapped.relative)
    for store_id, relatives in by_store.items():
        jobs = Job.objects.filter(
            owner=owner,
            source=TAPE_SOURCE,
            store_id=store_id,
            pins__path__in=relatives,
            pins__released_at__isnull=True,
        ).distinct()
        for job in jobs:
            released += job_release(job=job, paths=relatives)
    return released


def stage_request_delete(*, job: Job) -> None:
    """Cancel what still runs, release every pin, and hide the request (see the module
    docstring for why the row stays)."""
    if job.status in PENDING_STATUSES:
        with contextlib.suppress(ConflictError):  # it ended meanwhile
            job_cancel(job=job)
    job_release(job=job)
    now = timezone.now()
    tape = {**job.parameters.get("tape", {}), "deleted_at": now.isoformat()}
    Job.objects.filter(pk=job.pk).exclude(parameters__tape__has_key="deleted_at").update(
        parameters={**job.parameters, "tape": tape}, updated_at=now
    )
