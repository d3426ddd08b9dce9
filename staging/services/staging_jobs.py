"""Creating a staging job: the one path every dialect takes (the DTS, API v1's JSON and NDJSON
bodies, the task APIs' stage and restore-content, the WLCG tape API). A dialect translates its
wire format into a call here and the job back into its answer; the rule for naming files, the
limits and the writes are the same for all:

- an id must be one the catalogue gave out (ids come from a scan or an earlier request);
- a path names a file in the archive, scanned or not: one no scan has indexed yet is catalogued
  now, from a stat (a client need not run a scan before asking);
- names that match nothing are a 404 listing them (at most ``LISTED_AT_MOST``, with the count),
  and nothing is created; a path not written as a relative path is refused saying how to write
  it (``UnsafePathError``, which each dialect words as its contract says).

The tape API's contract differs in one point: a path that is no file of the archive fails on
its own, so it resolves paths itself and hands over the files that exist."""

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import timedelta

from staging.errors import (
    LISTED_AT_MOST,
    NotFoundError,
    ServiceError,
    listed_names,
    unknown_names,
)
from staging.models import File, Job, Store
from staging.selectors import files_by_ids, files_rows_by_ids
from staging.services.catalogue import catalogue_rows_register, catalogue_upsert_paths
from staging.services.job_rows import ROWS_CHUNK, chunked, rows_in_database
from staging.services.jobs import (
    StagingRows,
    job_create_staging,
    job_create_staging_from_rows,
    staging_rows_copy,
    staging_rows_resolve,
    store_links_cheaply,
)
from staging.storage import UnsafePathError, clean_relative_path


def staging_files_resolve(
    *, store: Store | None, ids: Sequence[str] | None = None, paths: Sequence[str] | None = None
) -> list[File]:
    """Catalogue entries named by ``ids`` or by ``paths``, in the order given without repeats,
    by the rule of the module docstring. ``store`` None (ids only: the DTS, whose ids name their
    store): any store's files."""
    if ids is not None:
        wanted = list(dict.fromkeys(ids))
        found = files_by_ids(ids=wanted, full=False)
        if store is None:
            unknown = [i for i in wanted if i not in found]
            what = "unknown"
        else:
            unknown = [i for i in wanted if i not in found or found[i].store_id != store.pk]
            what = f"not files of store {store.slug}"
        if unknown:
            raise NotFoundError(
                f"{len(unknown)} of {len(wanted)} ids are {what}: {listed_names(unknown)}",
                field="ids",
                extra=unknown_names("ids", unknown),
            )
        return [found[i] for i in wanted]
    cleaned = [clean_relative_path(raw) for raw in paths or []]
    return catalogue_upsert_paths(store=store, paths=list(dict.fromkeys(cleaned)))


def staging_rows_of_names(
    store: Store, names: Iterable[tuple[str, str]], *, by: str
) -> StagingRows:
    """``staging_rows_read(staging_files_in_chunks(...))``: the files a stream of ``names``
    (ids or paths, each with ``where`` it is) names, read into the database for
    ``staging_job_create(rows=...)``, by the same rule and with the same refusals. Ids on
    PostgreSQL are resolved by the database in one join once the stream is read."""
    if by != "ids" or not rows_in_database():
        return staging_rows_read(staging_files_in_chunks(store, names, by=by), store=store)
    rows = staging_rows_resolve(
        names, by="ids", store=store, listed_at_most=LISTED_AT_MOST, drop_repeats=True
    )
    if rows.unknown_count:
        raise _ids_unknown(
            store,
            [name for _, name in rows.unknown],
            count=rows.unknown_count,
            first_where=rows.unknown[0][0],
        )
    return rows


def staging_rows_of_paths(
    relatives: Iterable[tuple[str, str]], *, store: Callable[[], Store | None]
) -> StagingRows:
    """The tape API's rule for a stream of paths: the files of the archive that ``relatives``
    (clean relative paths of the store ``store`` answers once the first is read, each with
    ``where`` it is, without repeats) name, catalogued now if no scan has yet, read into the
    database for ``staging_job_create(rows=...)``; the paths that name no file are left out
    and listed in ``unknown``, all of them, in request order."""

    def register(paths: list[str]) -> dict[str, tuple[str, str, int]]:
        return catalogue_rows_register(store=store(), paths=paths)

    if rows_in_database():
        return staging_rows_resolve(relatives, by="paths", store=store, register=register)
    unknown: list[tuple[str, str]] = []

    def chunks() -> Iterator[list[tuple[str, str, int]]]:
        for chunk in chunked(relatives, ROWS_CHUNK):
            found = register([relative for _, relative in chunk])
            unknown.extend(entry for entry in chunk if entry[1] not in found)
            yield [found[relative] for _, relative in chunk if relative in found]

    rows = staging_rows_read(chunks(), store=store)
    rows.unknown, rows.unknown_count = unknown, len(unknown)
    return rows


def staging_files_in_chunks(
    store: Store, names: Iterable[tuple[str, str]], *, by: str
) -> Iterator[list[tuple[str, str, int]]]:
    """``staging_files_resolve`` for a stream of ``names`` (each with ``where`` it is, for
    errors: ``line 3``): (id, path, size) of the files, a chunk at a time, in order and without
    repeats. Unknown ids are a 404 once the stream is read, listing them as for a JSON body and
    naming where the first is."""
    seen: set[str] = set()
    # Only what the answer lists is kept, and the count: the stream may hold a million names.
    first_unknown: list[str] = []
    unknown_count, first_where = 0, ""
    for chunk in chunked(names, ROWS_CHUNK):
        if by == "paths":
            chunk = [(where, _path_cleaned(where, name)) for where, name in chunk]
        fresh = []
        for where, name in chunk:
            if name not in seen:
                seen.add(name)
                fresh.append((where, name))
        if not fresh:
            continue
        if by == "paths":
            files = catalogue_upsert_paths(store=store, paths=[name for _, name in fresh])
            yield [(f.id, f.path, f.size) for f in files]
            continue
        found = files_rows_by_ids(store=store, ids=[name for _, name in fresh])
        for where, name in fresh:
            if name not in found:
                first_where = first_where or where
                unknown_count += 1
                if len(first_unknown) < LISTED_AT_MOST:
                    first_unknown.append(name)
        yield [found[name] for _, name in fresh if name in found]
    if unknown_count:
        raise _ids_unknown(store, first_unknown, count=unknown_count, first_where=first_where)


def _ids_unknown(store: Store, first: list[str], *, count: int, first_where: str) -> NotFoundError:
    """The 404 of a stream of ids of which ``count`` name no file of ``store``: the ``first``
    of them listed, and where the first one is."""
    return NotFoundError(
        f"{count} ids are not files of store {store.slug}, the first on {first_where}: "
        f"{listed_names(first, count=count)}",
        field="ids",
        extra=unknown_names("ids", first, count=count),
    )


def _path_cleaned(where: str, raw: str) -> str:
    try:
        return clean_relative_path(raw)
    except UnsafePathError as exc:
        raise ServiceError(f"{where}: {exc}", field="paths") from exc


def staging_rows_read(
    chunks: Iterable[Sequence[tuple[str, str, int]]],
    *,
    store: Store | Callable[[], Store | None],
) -> StagingRows:
    """The files of ``chunks`` (from ``staging_files_in_chunks``, or a dialect's own reading)
    read into the database as they come, for ``staging_job_create(rows=...)``. ``store``, or a
    callable answering it once the first chunk named it (the tape API's paths name their
    store)."""
    if not callable(store):
        return staging_rows_copy(chunks, linked=store_links_cheaply(store))

    def linked() -> bool:
        known = store()
        return known is not None and store_links_cheaply(known)

    return staging_rows_copy(chunks, linked=linked)


def staging_job_create(
    *,
    owner,
    source: str,
    store: Store | None = None,
    ids: Sequence[str] | None = None,
    paths: Sequence[str] | None = None,
    files: Sequence[File] | None = None,
    rows: StagingRows | None = None,
    lifetime: timedelta | None = None,
    parameters: dict | None = None,
    idempotency_key: str = "",
    task: str = "stage",
) -> Job:
    """Create the staging job (sub-jobs, items, pins; the owner's limits checked, the store
    locked; the dispatcher woken once the transaction commits) for the files named one of four
    ways: ``ids`` or ``paths`` (resolved by ``staging_files_resolve``), ``files`` already
    resolved (by a task's parameters, or by the tape API's rule), or ``rows`` read by
    ``staging_rows_read``."""
    fields = {
        "owner": owner,
        "source": source,
        "lifetime": lifetime,
        "parameters": parameters,
        "idempotency_key": idempotency_key,
        "task": task,
    }
    if rows is not None:
        return job_create_staging_from_rows(store=store, rows=rows, **fields)
    if files is None:
        try:
            files = staging_files_resolve(store=store, ids=ids, paths=paths)
        except UnsafePathError as exc:
            raise ServiceError(str(exc), field="paths") from exc
    if store is None and files:
        # The store by reference: the job's service reads its row under the store's lock.
        store = Store(pk=files[0].store_id)
    return job_create_staging(store=store, files=files, **fields)
