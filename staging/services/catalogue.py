"""Writes to the store list and the file catalogue."""

import logging
import mimetypes
import os
import stat as stat_mode
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.db import transaction
from django.template.defaultfilters import pluralize
from django.utils import timezone

from staging.archive_walk import (
    FoundFile,
    file_md5,
    md5sum_entries,
    open_directory,
    walk_regular_files,
)
from staging.errors import LISTED_AT_MOST, NotFoundError, ServiceError, listed_names, unknown_names
from staging.models import File, Store, StoreKind
from staging.selectors import files_by_paths, files_rows_by_paths, values_in
from staging.services.stores import store_roots_validate
from staging.storage import TEMP_PREFIX, UnsafePathError, clean_relative_path, resolve_under
from staging.tape_maps import tape_location_of, tape_locations_record

logger = logging.getLogger(__name__)

SCAN_BATCH = 1000
CHECKSUM_FIELDS = ("md5", "sha256", "adler32")
NO_CHECKSUMS = dict.fromkeys(CHECKSUM_FIELDS, "")


def catalogue_mtime(found: os.stat_result) -> datetime:
    """A file's mtime as the catalogue records it: one conversion everywhere, so that a row can
    be compared with a later ``stat`` of its file."""
    return datetime.fromtimestamp(found.st_mtime, tz=UTC)


@dataclass(frozen=True)
class PrimaryStore:
    """The primary store after a start, and the roots it had before if this start moved them
    (``{"archive_root": "/old"}``), so the banner can say so."""

    store: Store
    previous_roots: dict[str, str]


def store_ensure_primary(
    *, slug: str = "primary", archive_root: str | None = None, staging_root: str | None = None
) -> PrimaryStore:
    """Make sure a primary store exists with both roots on disk.

    A root given here (ARCHIVE_ROOT/STAGING_ROOT when set) is the primary store's root on every
    start, not only the first: the configuration wins over what an earlier start recorded. A
    root not given keeps the store's own (one made primary by ``addstore`` keeps its roots),
    or the settings' default for a new store. New roots pass the checks ``addstore`` applies;
    ServiceError says which failed, and nothing changes."""
    with transaction.atomic():
        store = Store.objects.select_for_update().filter(is_primary=True).first()
        current = (
            (store.archive_root, store.staging_root)
            if store is not None
            else (str(settings.ARCHIVE_ROOT), str(settings.STAGING_ROOT))
        )
        archive, staging = store_roots_validate(
            archive_root=archive_root or current[0], staging_root=staging_root or current[1]
        )
        archive.mkdir(parents=True, exist_ok=True)
        staging.mkdir(parents=True, exist_ok=True)
        if store is None:
            store, _ = Store.objects.update_or_create(
                slug=slug,
                defaults={
                    "archive_root": str(archive),
                    "staging_root": str(staging),
                    "is_primary": True,
                    "description": "Primary store",
                },
            )
            return PrimaryStore(store=store, previous_roots={})
        previous = {
            name: old
            for name, old, new in (
                ("archive_root", store.archive_root, str(archive)),
                ("staging_root", store.staging_root, str(staging)),
            )
            if old != new
        }
        if previous:
            store.archive_root, store.staging_root = str(archive), str(staging)
            store.save(update_fields=["archive_root", "staging_root"])
            logger.warning("primary store %s: roots moved from %s", store.slug, previous)
    return PrimaryStore(store=store, previous_roots=previous)


@dataclass
class ScanSummary:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    vanished: int = 0
    hashed: int = 0

    @property
    def seen(self) -> int:
        return self.added + self.updated + self.unchanged

    def __str__(self) -> str:
        # What the scan command prints and the worker logs: a sentence, not the dataclass.
        return (
            f"{self.seen} file{pluralize(self.seen)} seen ({self.added} new, {self.updated} "
            f"changed, {self.unchanged} unchanged), {self.vanished} vanished, {self.hashed} "
            f"MD5{pluralize(self.hashed)} computed"
        )


def _scan_start(store: Store, prefix: str) -> tuple[str, int]:
    """The clean prefix and an open descriptor of its directory, or a ServiceError saying why
    the prefix cannot be scanned."""
    if prefix.strip("/"):
        try:
            prefix = clean_relative_path(prefix)
        except UnsafePathError as exc:
            raise ServiceError(str(exc), field="prefix") from exc
    else:
        prefix = ""
    try:
        return prefix, open_directory(Path(store.archive_root).resolve(), prefix)
    except OSError as exc:
        raise ServiceError(
            f"{prefix or '.'} is not a directory of store {store.slug} (symlinks are not "
            f"followed): {exc.strerror}",
            field="prefix",
        ) from exc


def catalogue_scan_prefix_check(*, store: Store, prefix: str) -> str:
    """The clean form of a prefix a scan can walk (a directory of the archive reached without
    any symlink), or a ServiceError naming what is wrong. The scan checks again when it runs."""
    prefix, fd = _scan_start(store, prefix)
    os.close(fd)
    return prefix


# What a scan tells ``on_file`` about each file: its path, its stat, and the checksums the
# catalogue holds for it after the scan (empty strings for those not known).
ScanVisitor = Callable[[str, os.stat_result, dict[str, str]], None]


def catalogue_scan(
    *,
    store: Store,
    prefix: str = "",
    on_file: ScanVisitor | None = None,
    keep_alive: Callable[[], None] = lambda: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> ScanSummary:
    """Index the store's archive tree (or the part under ``prefix``) into the catalogue.

    Ids are derived from store and path, so a re-scan keeps them; a changed size or mtime
    updates the entry and forgets its checksums (they describe old content); files no longer
    found are flagged ``present=False`` rather than deleted, so old jobs keep their references.
    ``on_file`` is called for every file found (the scan task writes its result rows there).

    Every file without an MD5 gets one (the DTS hands it to Globus to verify transfers): on a
    disk store by reading the file here; on a ``posix-tape`` store, where a read is a recall
    from tape, only from a ``<file>.md5`` sidecar. A file unchanged since the last scan (size
    and mtime) that has its MD5 is not read again. ``keep_alive`` is called while a file is
    read (a worker renews its lease there); ``should_stop`` is polled between chunks."""
    root = Path(store.archive_root).resolve()
    prefix, start_fd = _scan_start(store, prefix)
    try:
        return _catalogue_scan_from(
            store=store,
            root=root,
            prefix=prefix,
            start_fd=start_fd,
            on_file=on_file,
            keep_alive=keep_alive,
            should_stop=should_stop,
        )
    finally:
        os.close(start_fd)


def tape_locations_flush(store: Store, locations: dict | None) -> None:
    if locations:
        tape_locations_record(store=store, locations=locations)
        locations.clear()


def _catalogue_scan_from(
    *,
    store: Store,
    root: Path,
    prefix: str,
    start_fd: int,
    on_file: ScanVisitor | None,
    keep_alive: Callable[[], None],
    should_stop: Callable[[], bool],
) -> ScanSummary:
    reads_content = store.kind != StoreKind.POSIX_TAPE
    # A tape store's files may say where they are on tape (user.tape.vid, user.tape.position).
    tape_locations: dict[str, tuple[str, int | None]] | None = None if reads_content else {}
    existing_qs = File.objects.filter(store=store)
    if prefix:
        existing_qs = existing_qs.filter(path__startswith=prefix + "/")
    existing = {
        path: (file_id, size, mtime, present, checksums)
        for file_id, path, size, mtime, present, *checksums in existing_qs.values_list(
            "id", "path", "size", "mtime", "present", *CHECKSUM_FIELDS
        ).iterator(chunk_size=SCAN_BATCH)
    }
    now = timezone.now()
    summary = ScanSummary()
    to_create: list[File] = []
    to_update: list[File] = []
    unchanged_ids: list[str] = []

    def flush() -> None:
        File.objects.bulk_create(to_create, batch_size=SCAN_BATCH)
        File.objects.bulk_update(
            to_update,
            ["size", "mtime", "present", "last_seen_at", "md5", "sha256", "adler32"],
            batch_size=SCAN_BATCH,
        )
        for start_at in range(0, len(unchanged_ids), SCAN_BATCH):
            File.objects.filter(pk__in=unchanged_ids[start_at : start_at + SCAN_BATCH]).update(
                last_seen_at=now
            )
        to_create.clear()
        to_update.clear()
        unchanged_ids.clear()

    def md5_of(found: FoundFile) -> str:
        if not reads_content:
            return found.sidecar_md5()
        value = file_md5(found, keep_alive=keep_alive, should_stop=should_stop)
        summary.hashed += bool(value)
        return value

    for found in walk_regular_files(root, start_fd, prefix):
        relative, stat = found.relative, found.stat
        mtime = catalogue_mtime(stat)
        known = existing.pop(relative, None)
        if known is None:
            kept = {**NO_CHECKSUMS, "md5": md5_of(found)}
            to_create.append(_file_found(store, relative, stat, last_seen_at=now, md5=kept["md5"]))
            summary.added += 1
        else:
            file_id, size, old_mtime, present, checksums = known
            if size == stat.st_size and old_mtime == mtime and present:
                kept = dict(zip(CHECKSUM_FIELDS, checksums, strict=True))
                summary.unchanged += 1
                if kept["md5"] or not (md5 := md5_of(found)):
                    unchanged_ids.append(file_id)
                else:
                    kept["md5"] = md5
                    to_update.append(
                        File(
                            id=file_id,
                            size=size,
                            mtime=mtime,
                            present=True,
                            last_seen_at=now,
                            **kept,
                        )
                    )
            else:
                kept = {**NO_CHECKSUMS, "md5": md5_of(found)}
                to_update.append(
                    File(
                        id=file_id,
                        size=stat.st_size,
                        mtime=mtime,
                        present=True,
                        last_seen_at=now,
                        **kept,
                    )
                )
                summary.updated += 1
        if on_file is not None:
            on_file(relative, stat, kept)
        if tape_locations is not None and (location := tape_location_of(found)):
            tape_locations[relative] = location
        if len(to_create) + len(to_update) + len(unchanged_ids) >= SCAN_BATCH:
            flush()
            tape_locations_flush(store, tape_locations)
    flush()
    tape_locations_flush(store, tape_locations)

    vanished_ids = [file_id for file_id, _, _, present, _ in existing.values() if present]
    for start_at in range(0, len(vanished_ids), SCAN_BATCH):
        File.objects.filter(pk__in=vanished_ids[start_at : start_at + SCAN_BATCH]).update(
            present=False
        )
    summary.vanished = len(vanished_ids)
    logger.info("scan of %s/%s: %s", store.slug, prefix, summary)
    return summary


def catalogue_files_register(*, store: Store, paths: Sequence[str]) -> dict[str, File]:
    """Catalogue entries for ``paths`` (clean paths relative to the store's roots), keyed by path.

    Requests by path (the WLCG tape API) may name files no scan has indexed yet: those that are
    regular files in the archive are entered now, by stat, with the id a scan would give them (a
    file a scan had flagged vanished is marked present again, its old checksums forgotten).
    Paths that are not regular files under the archive root are absent from the answer."""
    wanted = list(dict.fromkeys(paths))
    known = set(
        File.objects.filter(store=store, path__in=values_in(wanted), present=True).values_list(
            "path", flat=True
        )
    )
    _catalogue_unknown_enter(store, [relative for relative in wanted if relative not in known])
    return files_by_paths(store=store, paths=wanted)


def catalogue_rows_register(
    *, store: Store, paths: Sequence[str]
) -> dict[str, tuple[str, str, int]]:
    """``catalogue_files_register`` as plain rows (id, path, size) keyed by path, for requests
    of many files: one query when the catalogue knows every path, else one more for those it
    entered."""
    rows = files_rows_by_paths(store=store, paths=paths)
    unknown = [relative for relative in dict.fromkeys(paths) if relative not in rows]
    if _catalogue_unknown_enter(store, unknown):
        rows.update(files_rows_by_paths(store=store, paths=unknown))
    return rows


def _file_found(store: Store, relative: str, stat: os.stat_result, **fields) -> File:
    """The catalogue row of a regular file found in the archive, from its ``stat``."""
    return File(
        id=File.id_for(store.slug, relative),
        store=store,
        path=relative,
        size=stat.st_size,
        mtime=catalogue_mtime(stat),
        media_type=mimetypes.guess_type(relative)[0] or "application/octet-stream",
        **fields,
    )


def _catalogue_unknown_enter(store: Store, paths: Sequence[str]) -> bool:
    """Enter in the catalogue those of ``paths`` (not yet catalogued as present) that are
    regular files in the archive, by stat; returns whether there were any."""
    root = Path(store.archive_root)
    now = timezone.now()
    found: list[File] = []
    for relative in paths:
        try:
            info = resolve_under(root, relative).stat()
        except (OSError, UnsafePathError):
            continue
        if not stat_mode.S_ISREG(info.st_mode) or Path(relative).name.startswith(TEMP_PREFIX):
            continue
        found.append(_file_found(store, relative, info, last_seen_at=now))
    if found:
        # Two requests may register the same new file at once: the second one refreshes it.
        File.objects.bulk_create(
            found,
            batch_size=SCAN_BATCH,
            update_conflicts=True,
            unique_fields=["store", "path"],
            update_fields=["size", "mtime", "present", "last_seen_at", "md5", "sha256", "adler32"],
        )
        logger.info("catalogue: registered %s files of %s by path", len(found), store.slug)
    return bool(found)


@transaction.atomic
def catalogue_upsert_paths(*, store: Store, paths: Sequence[str]) -> list[File]:
    """Catalogue entries for ``paths`` as a client sent them (relative to the store's archive
    root), in the order given without repeats: entered by ``catalogue_files_register`` when
    new, refreshed when the file changed since it was catalogued (a request by path means the
    file as it is now).

    Refuses the whole request, writing nothing, when a path leaves the archive root (``..``, an
    absolute path, a symlink pointing out; 400) or names no regular file (404): the client is
    told which."""
    root = Path(store.archive_root)
    unsafe: list[str] = []
    missing: list[str] = []
    found: dict[str, os.stat_result] = {}
    for raw in paths:
        try:
            relative = clean_relative_path(raw)
            absolute = resolve_under(root, relative)
        except UnsafePathError:
            unsafe.append(raw)
            continue
        if relative in found:
            continue
        if any(part.startswith(TEMP_PREFIX) for part in PurePosixPath(relative).parts):
            missing.append(raw)  # our own half-written copies are never files to stage
            continue
        try:
            info = absolute.stat()
        except OSError:
            missing.append(raw)
            continue
        if not stat_mode.S_ISREG(info.st_mode):
            missing.append(raw)
            continue
        found[relative] = info
    if unsafe:
        raise ServiceError(
            f"{len(unsafe)} of {len(paths)} paths leave the archive of store {store.slug}: "
            f"{listed_names(unsafe)}",
            field="paths",
            extra={"unsafe_paths": unsafe[:LISTED_AT_MOST]},
        )
    entries = catalogue_files_register(store=store, paths=list(found))
    missing += [relative for relative in found if relative not in entries]  # gone meanwhile
    if missing:
        raise NotFoundError(
            f"{len(missing)} of {len(paths)} paths are not files in the archive of store "
            f"{store.slug}: {listed_names(missing)}",
            field="paths",
            extra=unknown_names("paths", missing),
        )

    now = timezone.now()
    changed: list[File] = []
    for relative, info in found.items():
        entry = entries[relative]
        mtime = catalogue_mtime(info)
        if entry.size != info.st_size or entry.mtime != mtime:
            # Changed content: the old checksums describe something else.
            entry.size, entry.mtime, entry.last_seen_at = info.st_size, mtime, now
            entry.md5 = entry.sha256 = entry.adler32 = ""
            changed.append(entry)
    File.objects.bulk_update(
        changed,
        ["size", "mtime", "last_seen_at", "md5", "sha256", "adler32"],
        batch_size=SCAN_BATCH,
    )
    return [entries[relative] for relative in found]


def catalogue_file_lacks_md5(*, file_id: str | None) -> bool:
    """Whether the catalogue entry exists and has no MD5 yet: staging then takes the MD5 of
    what it copies (see ``catalogue_file_md5_record``)."""
    return file_id is not None and File.objects.filter(pk=file_id, md5="").exists()


def catalogue_file_md5_record(*, file_id: str, md5: str, copied: os.stat_result) -> bool:
    """Record the MD5 a staging copy computed of the archive file it read (``copied`` is that
    file's stat, unchanged from the start to the end of the copy). A compare-and-set: only on a
    row that still has no MD5 and still describes that content (same size and mtime), so
    neither a checksum learned meanwhile nor a row a scan has since moved on is overwritten.
    Not fenced by a sub-job's lease: the MD5 describes the archive file, not the job's work."""
    return bool(
        File.objects.filter(
            pk=file_id, md5="", size=copied.st_size, mtime=catalogue_mtime(copied)
        ).update(md5=md5)
    )


@dataclass
class Md5ImportSummary:
    recorded: int = 0
    unknown_paths: list[str] = field(default_factory=list)
    malformed_lines: list[int] = field(default_factory=list)


def catalogue_md5_import(*, store: Store, lines: Iterable[str]) -> Md5ImportSummary:
    """Record MD5s listed in md5sum's format (``<hex>  <path relative to the archive root>``)
    on the store's catalogue entries: how a ``posix-tape`` store, whose files a scan never
    reads, learns checksums the archive already knows. Paths the catalogue does not have (scan
    first) and lines that are not md5sum lines are counted, not fatal."""
    summary = Md5ImportSummary()
    batch: dict[str, str] = {}

    def flush() -> None:
        entries = list(File.objects.filter(store=store, path__in=list(batch)).only("id", "path"))
        for entry in entries:
            entry.md5 = batch.pop(entry.path)
        File.objects.bulk_update(entries, ["md5"], batch_size=SCAN_BATCH)
        summary.recorded += len(entries)
        summary.unknown_paths.extend(batch)
        batch.clear()

    for number, entry in md5sum_entries(lines):
        if entry is None:
            summary.malformed_lines.append(number)
            continue
        path, digest = entry
        batch[path] = digest
        if len(batch) >= SCAN_BATCH:
            flush()
    flush()
    return summary
