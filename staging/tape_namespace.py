"""The WLCG tape API's namespace: how a tape client's paths map into our stores, and where the
file each names has its replicas (``archiveinfo``).

A tape client names files by absolute namespace paths. Rule: a path whose first segment is a
store id names that store (``/<storeID>/run1/a.fastq``); any other path is in the primary
store (``/run1/a.fastq``). Every file stays reachable in the first form, even one whose
top directory happens to share a store's id."""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from staging.errors import ServiceError
from staging.models import File, Store
from staging.storage import UnsafePathError, clean_relative_path, regular_file_size


@dataclass(frozen=True)
class TapePath:
    """A client's path mapped into a store."""

    client: str  # as sent with repeated slashes collapsed: what we echo back
    store: Store
    relative: str  # clean, relative to the store's archive and staging roots
    names_store: bool  # the path began with the store's id


def collapse_slashes(raw: str) -> str:
    # Most paths have no repeated slash: the test costs a tenth of the substitution.
    return re.sub(r"/{2,}", "/", raw) if "//" in raw else raw


def tape_stores() -> tuple[dict[str, Store], Store | None]:
    stores = {store.slug: store for store in Store.objects.all()}
    primary = next((store for store in stores.values() if store.is_primary), None)
    return stores, primary


def tape_path_map(raw: str, *, stores: dict[str, Store], primary: Store | None) -> TapePath:
    """Map one client path into a store; raises ServiceError for a path that names no file of
    ours (empty, ``..``, a NUL byte, no primary store)."""
    client = collapse_slashes(raw)
    parts = [part for part in client.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ServiceError(f"path may not contain '..': {raw!r}")
    names_store = len(parts) > 1 and parts[0] in stores
    store = stores[parts[0]] if names_store else primary
    if store is None:
        raise ServiceError(f"{raw!r} names no store and no primary store is set up")
    try:
        relative = clean_relative_path("/".join(parts[1:] if names_store else parts))
    except UnsafePathError as exc:
        raise ServiceError(f"{exc}: {raw!r}") from exc
    return TapePath(client=client, store=store, relative=relative, names_store=names_store)


def tape_paths_map(*, paths: Sequence[str]) -> list[TapePath]:
    stores, primary = tape_stores()
    return [tape_path_map(raw, stores=stores, primary=primary) for raw in paths]


class Locality(StrEnum):
    """Where a file's replicas are (WLCG tape API ``archiveinfo``). The archive store plays the
    tape, the staging area the disk buffer; see docs/tape.md for the table."""

    DISK = "DISK"
    TAPE = "TAPE"
    DISK_AND_TAPE = "DISK_AND_TAPE"
    LOST = "LOST"
    NONE = "NONE"  # never reported: every file we know was archived (TAPE) or staged (DISK)
    UNAVAILABLE = "UNAVAILABLE"


def file_localities(*, paths: Sequence[str]) -> list[dict]:
    """``{"path", "locality"}`` or ``{"path", "error"}`` for each client path, in order."""
    stores, primary = tape_stores()
    mapped: list[TapePath | dict] = []
    for raw in paths:
        try:
            mapped.append(tape_path_map(raw, stores=stores, primary=primary))
        except ServiceError as exc:
            mapped.append({"path": collapse_slashes(raw), "error": exc.detail})
    wanted: dict[int, set[str]] = {}
    for entry in mapped:
        if isinstance(entry, TapePath):
            wanted.setdefault(entry.store.pk, set()).add(entry.relative)
    catalogued = {
        (store_id, path): size
        for store_id, relatives in wanted.items()
        for path, size in File.objects.filter(store_id=store_id, path__in=relatives).values_list(
            "path", "size"
        )
    }
    return [
        _locality(entry, catalogued.get((entry.store.pk, entry.relative)))
        if isinstance(entry, TapePath)
        else entry
        for entry in mapped
    ]


def _locality(mapped: TapePath, catalogued_size: int | None) -> dict:
    store, relative = mapped.store, mapped.relative
    answer = {"path": mapped.client}
    if not Path(store.archive_root).is_dir():
        return {**answer, "locality": Locality.UNAVAILABLE}
    try:
        archived = regular_file_size(store.archive_root, relative)
        staged = regular_file_size(store.staging_root, relative)
    except UnsafePathError:
        return {**answer, "error": "the path leads outside the store"}
    except IsADirectoryError:
        return {**answer, "error": "the path is a directory"}
    except OSError:
        return {**answer, "locality": Locality.UNAVAILABLE}
    # A staged copy counts only if it is the archived file (same size), not a stale one.
    expected = archived if archived is not None else catalogued_size
    on_disk = staged is not None and (expected is None or staged == expected)
    if archived is not None:
        return {**answer, "locality": Locality.DISK_AND_TAPE if on_disk else Locality.TAPE}
    if on_disk:
        return {**answer, "locality": Locality.DISK}
    if catalogued_size is not None:
        return {**answer, "locality": Locality.LOST}
    return {**answer, "error": "no such file"}
