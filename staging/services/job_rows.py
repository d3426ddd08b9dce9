"""A staging job's sub-job, item and pin rows written by the database, not built as model
instances.

A 10,000-file request would otherwise build 20,000 Django instances and prepare every field of
each; a million-file one would not fit in the web process. On PostgreSQL the sub-jobs are
written by one INSERT from arrays, the items and pins by two INSERT ... SELECT statements from
a row source the caller names: arrays sent as parameters (``unnest``) for a request already in
memory, or a temporary table a streamed request was copied into (``COPY``). Other backends keep
the ORM (``bulk_create``)."""

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from django.db import connection
from django.db.models import Model
from django.utils import timezone

from staging.models import Item, Job, Pin, SubJob

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
    source: str,
    source_params: Sequence,
    expires_at: datetime,
    paths_distinct: bool = False,
    try_lock: int | None = None,
) -> bool:
    """Insert the job's items from ``source`` (rows ``t(file_id, path, size, slice, pos)``,
    ``pos`` numbered from 1 in request order), each in the job's sub-job whose sequence is its
    ``slice``, then pin every item's path for the job. Items take ids in request order, which
    listings follow. ``paths_distinct``: no two rows of ``source`` share a path, so no pin can
    meet another (without it a path named twice is pinned once). ``try_lock``: the pins'
    statement also tries that advisory lock for the transaction (without waiting), so a
    statement that must read under it costs no round trip of its own; returns whether it was
    taken (False without ``try_lock``)."""
    given = ["job_id", "subjob_id", "file_id", "path", "size"]
    columns, placeholders, values = _defaults(Item, given)
    pin_given = ["job_id", "store_id", "path", "expires_at"]
    pin_columns, pin_placeholders, pin_values = _defaults(Pin, pin_given)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Item._meta.db_table} ({', '.join(given + columns)}) "
            f"SELECT %s, s.id, t.file_id, t.path, t.size, {', '.join(placeholders)} "
            f"FROM {source} JOIN {SubJob._meta.db_table} s "
            "ON s.job_id = %s AND s.sequence = t.slice ORDER BY t.pos",
            [job.pk, *values, *source_params, job.pk],
        )
        # From the rows just written, so the paths cross the network once. ON CONFLICT costs a
        # speculative insertion per pin (a third more for a million), so only where needed.
        pins = (
            f"INSERT INTO {Pin._meta.db_table} ({', '.join(pin_given + pin_columns)}) "
            f"SELECT job_id, %s, path, %s, {', '.join(pin_placeholders)} "
            f"FROM {Item._meta.db_table} WHERE job_id = %s"
            + ("" if paths_distinct else " ON CONFLICT DO NOTHING")
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
