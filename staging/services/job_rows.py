"""A staging job's item and pin rows written by the database, not built as model instances.

A 10,000-file request would otherwise build 20,000 Django instances and prepare every field of
each; a million-file one would not fit in the web process. On PostgreSQL the rows are written
by two INSERT ... SELECT statements from a row source the caller names: arrays sent as
parameters (``unnest``) for a request already in memory, or a temporary table a streamed
request was copied into (``COPY``). Other backends keep the ORM (``bulk_create``)."""

from collections.abc import Sequence
from datetime import datetime

from django.db import connection
from django.db.models import Model

from staging.models import Item, Job, Pin

# The row source of a request held in memory: three parallel arrays, numbered from 1.
ARRAYS_SOURCE = (
    "unnest(%s::varchar[], %s::varchar[], %s::bigint[]) "
    "WITH ORDINALITY AS t(file_id, path, size, pos)"
)


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


def items_and_pins_insert(
    *,
    job: Job,
    source: str,
    source_params: Sequence,
    subjob_ids: Sequence[int],
    slice_starts: Sequence[int],
    expires_at: datetime,
) -> None:
    """Insert the job's items from ``source`` (rows ``t(file_id, path, size, pos)``, ``pos``
    numbered from 1 in request order), each in the sub-job whose slice holds its position
    (``slice_starts``: the first position of each slice, ascending), then pin every item's
    path for the job. Items take ids in request order, which listings follow."""
    given = ["job_id", "subjob_id", "file_id", "path", "size"]
    columns, placeholders, values = _defaults(Item, given)
    pin_given = ["job_id", "store_id", "path", "expires_at"]
    pin_columns, pin_placeholders, pin_values = _defaults(Pin, pin_given)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Item._meta.db_table} ({', '.join(given + columns)}) "
            "SELECT %s, (%s::bigint[])[width_bucket(t.pos, %s::bigint[])], t.file_id, t.path, "
            f"t.size, {', '.join(placeholders)} FROM {source} ORDER BY t.pos",
            [job.pk, list(subjob_ids), list(slice_starts), *values, *source_params],
        )
        # From the rows just written, so the paths cross the network once.
        cursor.execute(
            f"INSERT INTO {Pin._meta.db_table} ({', '.join(pin_given + pin_columns)}) "
            f"SELECT job_id, %s, path, %s, {', '.join(pin_placeholders)} "
            f"FROM {Item._meta.db_table} WHERE job_id = %s ON CONFLICT DO NOTHING",
            [job.store_id, expires_at, *pin_values, job.pk],
        )
