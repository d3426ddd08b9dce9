"""A staging job's sub-job, item and pin rows written by the database, not built as model
instances.

A 10,000-file request would otherwise build 20,000 Django instances and prepare every field of
each; a million-file one would not fit in the web process. On PostgreSQL the sub-jobs are
written by one INSERT from arrays, the items and pins by two INSERT ... SELECT statements from
a row source the caller names: arrays sent as parameters (``unnest``) for a request already in
memory, or a temporary table a streamed request was copied into (``COPY``). Other backends keep
the ORM (``bulk_create``)."""

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime

from django.db import connection
from django.db.models import Model
from django.utils import timezone

from staging.models import File, Item, Job, Pin, SubJob

# The row source of a request held in memory: four parallel arrays, numbered from 1.
ARRAYS_SOURCE = (
    "unnest(%s::varchar[], %s::varchar[], %s::bigint[], %s::integer[]) "
    "WITH ORDINALITY AS t(file_id, path, size, slice, pos)"
)


# Names resolved against the catalogue per query when a request streams in: enough to make the
# round trips cheap, few enough that one chunk's rows weigh little beside the web process.
ROWS_CHUNK = 10_000


def chunked(iterable: Iterable, size: int) -> Iterator[list]:
    """``iterable`` in lists of ``size`` (the last one shorter), read as it goes."""
    chunk = []
    for value in iterable:
        chunk.append(value)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def rows_in_database() -> bool:
    """Whether rows are written by INSERT ... SELECT (PostgreSQL) rather than the ORM."""
    return connection.vendor == "postgresql"


def _defaults(model: type[Model], given: Sequence[str]) -> tuple[list[str], list[str], list]:
    """The columns of ``model`` not in ``given`` (nor its primary key), each as a typed
    parameter holding the field's default, so the database need not know Django's defaults."""
    columns, placeholders, values = [], [], []
    for field in model._meta.concrete_fields:
        if field.primary_key or field.column in given:
            continue
        columns.append(field.column)
        placeholders.append(f"%s::{field.db_type(connection)}")
        values.append(field.get_db_prep_save(field.get_default(), connection))
    return columns, placeholders, values


def subjobs_insert(*, job: Job, totals: Sequence[Sequence[int]], first_sequence: int) -> list[int]:
    """Insert one sub-job of ``job`` per slice (``totals``: the files and bytes of each),
    numbered from ``first_sequence``, in one statement; returns their ids in sequence order.
    (A million-file job has 20,000 sub-jobs: the ORM took longer to build their INSERT than the
    database took to run it.)"""
    given = ["job_id", "sequence", "files_total", "bytes_total", "created_at"]
    columns, placeholders, values = _defaults(SubJob, given)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {SubJob._meta.db_table} ({', '.join(given + columns)}) "
            f"SELECT %s, %s + t.n - 1, t.files, t.bytes, %s, {', '.join(placeholders)} "
            "FROM unnest(%s::integer[], %s::bigint[]) WITH ORDINALITY AS t(files, bytes, n) "
            "RETURNING id, sequence",
            [
                job.pk,
                first_sequence,
                timezone.now(),
                *values,
                [files for files, _ in totals],
                [size for _, size in totals],
            ],
        )
        return [pk for pk, _ in sorted(cursor.fetchall(), key=lambda row: row[1])]


def items_and_pins_insert(
    *,
    job: Job,
    subjob_ids: Sequence[int],
    source: str,
    source_params: Sequence,
    expires_at: datetime,
    rows: int,
    paths_distinct: bool = False,
    pins_from_source: bool = False,
    try_lock: int | None = None,
) -> bool:
    """Insert the job's ``rows`` items from ``source`` (rows ``t(file_id, path, size, slice,
    pos)``, ``pos`` numbered from 1 in request order), each in the sub-job ``subjob_ids[slice -
    1]``, then pin every item's path for the job. Items take ids in request order, which
    listings follow. ``paths_distinct``: no two rows of ``source`` share a path, so no pin can
    meet another (without it a path named twice is pinned once). ``pins_from_source``: the
    pins are read from ``source`` (a table in the database) rather than from the items just
    written (what spares arrays of paths a second trip over the network). ``try_lock``: the
    pins' statement also tries that advisory lock for the transaction (without waiting), so a
    statement that must read under it costs no round trip of its own; returns whether it was
    taken (False without ``try_lock``)."""
    given = ["job_id", "subjob_id", "file_id", "path", "size"]
    columns, placeholders, values = _defaults(Item, given)
    pin_given = ["job_id", "store_id", "path", "expires_at"]
    pin_columns, pin_placeholders, pin_values = _defaults(Pin, pin_given)
    with connection.cursor() as cursor:
        sort_memory_ensure(cursor, rows)
        # The sub-job by its place in an array of their ids, not by a join with them.
        cursor.execute(
            f"INSERT INTO {Item._meta.db_table} ({', '.join(given + columns)}) "
            f"SELECT %s, (%s::bigint[])[t.slice], t.file_id, t.path, t.size, "
            f"{', '.join(placeholders)} FROM {source} ORDER BY t.pos",
            [job.pk, list(subjob_ids), *values, *source_params],
        )
        # ON CONFLICT costs a speculative insertion per pin (a third more for a million), so
        # only where needed.
        conflicts = "" if paths_distinct else " ON CONFLICT DO NOTHING"
        if pins_from_source:
            pins = (
                f"INSERT INTO {Pin._meta.db_table} ({', '.join(pin_given + pin_columns)}) "
                f"SELECT %s, %s, t.path, %s, {', '.join(pin_placeholders)} FROM {source}"
                + conflicts
            )
            params = [job.pk, job.store_id, expires_at, *pin_values]
        else:
            # From the rows just written, so the paths cross the network once.
            pins = (
                f"INSERT INTO {Pin._meta.db_table} ({', '.join(pin_given + pin_columns)}) "
                f"SELECT job_id, %s, path, %s, {', '.join(pin_placeholders)} "
                f"FROM {Item._meta.db_table} WHERE job_id = %s" + conflicts
            )
            params = [job.store_id, expires_at, *pin_values, job.pk]
        if try_lock is None:
            cursor.execute(pins, params)
            return False
        # A data-modifying WITH runs to its end whatever the outer query reads.
        cursor.execute(
            f"WITH pins AS ({pins}) SELECT pg_try_advisory_xact_lock(%s)", [*params, try_lock]
        )
        return cursor.fetchone()[0]


# What sorting a request's rows by their place takes in memory, per row (the row, its sort
# slot and the allocator's overhead), and the most a request may ask of the server for it.
SORT_BYTES_PER_ROW = 256
SORT_MEMORY_MAX_KB = 512 * 1024
# Rows that PostgreSQL's default work_mem (4 MB) sorts in memory: no need to ask for more.
SORT_ROWS_IN_DEFAULT = 4 * 1024**2 // SORT_BYTES_PER_ROW


def sort_memory_ensure(cursor, rows: int) -> None:
    """Let this transaction sort ``rows`` rows in memory (work_mem raised, never lowered, until
    it ends): past the server's default the sort of a large request's items spills to disk
    and is read back in merges, seconds for a million."""
    if rows <= SORT_ROWS_IN_DEFAULT:
        return
    wanted_kb = min(rows * SORT_BYTES_PER_ROW // 1024, SORT_MEMORY_MAX_KB)
    cursor.execute(
        "SELECT set_config('work_mem', greatest(pg_size_bytes(current_setting('work_mem')) "
        "/ 1024, %s)::text || 'kB', true)",
        [wanted_kb],
    )


# What COPY's text format gives a meaning to inside a value; a name holding none is sent as is.
_COPY_SPECIAL = ("\\", "\t", "\n", "\r")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def names_copy(table: str, names: Iterable[tuple[str, str]], *, drop_repeats: bool) -> int:
    """Create the temporary table ``table`` (dropped at commit) and COPY ``names`` into it as
    they come: (``pos`` numbered from 1, ``place``, ``name``) for each (where, name), a name
    named again dropped if ``drop_repeats`` (else they must come without repeats). Returns how
    many. Names are taken and lines formatted a chunk at a time rather than row by row through
    COPY's per-row adaptation: a million names cost seconds that way."""
    count = 0
    seen: set[str] = set()
    entries = iter(names)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE {table} (pos bigint, place text, name varchar(1024)) "
            "ON COMMIT DROP"
        )
        with cursor.copy(f"COPY {table} (pos, place, name) FROM STDIN") as copy:
            while chunk := list(itertools.islice(entries, ROWS_CHUNK)):
                if drop_repeats:
                    chunk = [e for e in chunk if e[1] not in seen and not seen.add(e[1])]
                joined = "".join(name for _, name in chunk) + "".join(p for p, _ in chunk)
                if any(special in joined for special in _COPY_SPECIAL):
                    chunk = [
                        (p.translate(_COPY_ESCAPES), n.translate(_COPY_ESCAPES)) for p, n in chunk
                    ]
                lines = [f"{count + n}\t{p}\t{name}\n" for n, (p, name) in enumerate(chunk, 1)]
                copy.write("".join(lines))
                count += len(chunk)
    return count


def rows_of_catalogue(
    *,
    names_table: str,
    names: int,
    rows_table: str,
    store_id: int,
    by: str,
    files_per_slice: int,
) -> tuple[int, int, int]:
    """Create the temporary table ``rows_table`` (dropped at commit) of the ``names`` names in
    ``names_table`` (see ``names_copy``), ids or paths (``by``), joined with the catalogue in
    one statement: ``pos``, ``place``, ``name``, and the present file of store ``store_id`` it
    names (``file_id``, ``path``, ``size``; NULL when none), each placed in slice ``(pos - 1) //
    files_per_slice + 1``. Returns the files found, their bytes and the names that name none."""
    column = {"ids": "id", "paths": "path"}[by]
    with connection.cursor() as cursor:
        sort_memory_ensure(cursor, names)
        # Written in request order, which the join does not keep: the items' sort by place then
        # finds its rows sorted, and the pins read in that order meet their indexes in order
        # too (a request's paths are mostly sorted), not at random pages.
        cursor.execute(
            f"CREATE TEMPORARY TABLE {rows_table} ON COMMIT DROP AS "
            "SELECT n.pos, n.place, n.name, f.id AS file_id, f.path, f.size, "
            "((n.pos - 1) / %s + 1)::integer AS slice "
            f"FROM {names_table} n LEFT JOIN {File._meta.db_table} f "
            f"ON f.{column} = n.name AND f.store_id = %s AND f.present ORDER BY n.pos",
            [files_per_slice, store_id],
        )
        cursor.execute(f"DROP TABLE {names_table}")
        return _rows_counted(cursor, rows_table)


def _rows_counted(cursor, rows_table: str) -> tuple[int, int, int]:
    cursor.execute(
        f"SELECT count(path), coalesce(sum(size), 0), count(*) - count(path) FROM {rows_table}"
    )
    return cursor.fetchone()


def rows_unknown(rows_table: str, *, at_most: int | None = None) -> list[tuple[str, str]]:
    """The first ``at_most`` (place, name) of ``rows_table`` that name no file, in request
    order."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT place, name FROM {rows_table} WHERE path IS NULL ORDER BY pos LIMIT %s",
            [at_most],
        )
        return cursor.fetchall()


def rows_unknown_names(rows_table: str) -> Iterator[list[str]]:
    """Every name of ``rows_table`` that names no file, in request order, a chunk at a time
    (read as it goes: there may be a million)."""
    with connection.chunked_cursor() as rows:
        rows.execute(f"SELECT name FROM {rows_table} WHERE path IS NULL ORDER BY pos")
        while batch := rows.fetchmany(ROWS_CHUNK):
            yield [name for (name,) in batch]


def rows_resolve_paths(rows_table: str, files: Sequence[tuple[str, str, int]]) -> None:
    """Give the rows of ``rows_table`` whose path named no file the catalogue ``files`` (id,
    path, size) entered for them since."""
    if not files:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {rows_table} r SET file_id = t.file_id, path = t.path, size = t.size "
            "FROM unnest(%s::varchar[], %s::varchar[], %s::bigint[]) "
            "AS t(file_id, path, size) WHERE r.path IS NULL AND r.name = t.path",
            [list(column) for column in zip(*files, strict=True)],
        )


def rows_counted(rows_table: str) -> tuple[int, int, int]:
    """``rows_of_catalogue``'s counts, again."""
    with connection.cursor() as cursor:
        return _rows_counted(cursor, rows_table)


def rows_found_only(rows_table: str, found_table: str, *, files_per_slice: int) -> None:
    """Create the temporary table ``found_table`` (dropped at commit) of the rows of
    ``rows_table`` that name a file, numbered again from 1 in request order and placed in
    slices as ``rows_of_catalogue`` places them, and drop ``rows_table``."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE {found_table} ON COMMIT DROP AS "
            "SELECT n AS pos, place, name, file_id, path, size, "
            "((n - 1) / %s + 1)::integer AS slice FROM "
            f"(SELECT *, row_number() OVER (ORDER BY pos) AS n FROM {rows_table} "
            "WHERE path IS NOT NULL) AS r ORDER BY n",
            [files_per_slice],
        )
        cursor.execute(f"DROP TABLE {rows_table}")


def rows_slices(rows_table: str, *, max_bytes: int) -> list[list[int]] | None:
    """The [files, bytes] of each slice of ``rows_table`` as placed by ``rows_of_catalogue``
    (a fixed number of files each), or None if one of them holds more than ``max_bytes``: then
    the greedy placement differs, and ``rows_slices_place`` places them again."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*), sum(size) FROM {rows_table} GROUP BY slice ORDER BY slice"
        )
        totals = [[files, size] for files, size in cursor.fetchall()]
    return None if any(size > max_bytes for _, size in totals) else totals


def rows_slices_place(rows_table: str, place: Callable[[int], int]) -> None:
    """Place every row of ``rows_table`` again, in request order, in the slice ``place`` gives
    for its size (slices are runs of consecutive rows)."""
    starts, last = [], 0
    with connection.chunked_cursor() as rows:  # read as it goes, not a million tuples at once
        rows.execute(f"SELECT pos, size FROM {rows_table} ORDER BY pos")
        while batch := rows.fetchmany(ROWS_CHUNK):
            for pos, size in batch:
                number = place(size)
                if number != last:
                    starts.append(pos)
                    last = number
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {rows_table} SET slice = width_bucket(pos, %s::bigint[])", [starts])
