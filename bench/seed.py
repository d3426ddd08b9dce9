"""Fast seeding of job rows with one INSERT … SELECT over generate_series (no ORM objects): a
million rows take seconds, and a run tops up what an earlier run left rather than starting over."""

import random

from staging.models import TERMINAL_STATUSES, Job

SEED_SOURCE = "bench-seed"
# Seeded jobs are spread back in time this far apart, so a million span about two years (the
# admin's date hierarchy then has several years and months to offer).
SEED_SPACING_SECONDS = 60

_TERMINAL_SQL = ", ".join(f"'{status}'" for status in sorted(TERMINAL_STATUSES))

# How each column of a seeded job is made, per row of generate_series (``t``). Per hundred jobs:
# 90 finished, 4 failed, 2 partially failed, 2 cancelled, 1 running, 1 queued. A column not
# named here (one added to Job later) gets its model default.
_COLUMNS = {
    "uuid": "gen_random_uuid()",
    "task": "'stage'",
    "store_id": "%(store)s",
    "owner_id": "%(owner)s",
    "source": "%(source)s",
    "parameters": "'{}'::jsonb",
    "status": "t.status",
    "files_total": "t.files",
    "files_done": "CASE WHEN t.status = 'FINISHED' THEN t.files ELSE 0 END",
    "files_failed": "CASE WHEN t.status IN ('FAILED', 'PARTIALLY_FAILED') THEN 1 ELSE 0 END",
    "bytes_total": "t.files * 1048576",
    "bytes_done": "CASE WHEN t.status = 'FINISHED' THEN t.files * 1048576 ELSE 0 END",
    "result": "'{}'::jsonb",
    "error": "''",
    "lifetime": "interval '14 days'",
    "idempotency_key": "''",
    "created_at": "t.created",
    "started_at": "t.created + interval '2 seconds'",
    "finished_at": (
        f"CASE WHEN t.status IN ({_TERMINAL_SQL}) THEN t.created + interval '30 seconds' END"
    ),
    "updated_at": "t.created + interval '30 seconds'",
}

_ROWS_SQL = f"""
FROM (
    SELECT
        i,
        now() - (%(last)s - i) * interval '{SEED_SPACING_SECONDS} seconds' AS created,
        CASE
            WHEN i %% 100 < 90 THEN 'FINISHED'
            WHEN i %% 100 < 94 THEN 'FAILED'
            WHEN i %% 100 < 96 THEN 'PARTIALLY_FAILED'
            WHEN i %% 100 < 98 THEN 'CANCELLED'
            WHEN i %% 100 < 99 THEN 'RUNNING'
            ELSE 'NOT_STARTED'
        END AS status,
        1 + i %% 50 AS files
    FROM generate_series(%(first)s, %(last)s) AS i
) AS t
"""


def _insert_sql(connection) -> tuple[str, dict]:
    """The INSERT … SELECT, and the parameters of the columns that take their model default."""
    columns, values, defaults = [], [], {}
    for field in Job._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(connection.ops.quote_name(field.column))
        if field.column in _COLUMNS:
            values.append(_COLUMNS[field.column])
        else:
            name = f"default_{field.column}"
            defaults[name] = field.get_db_prep_save(field.get_default(), connection)
            values.append(f"%({name})s")
    sql = (
        f"INSERT INTO {Job._meta.db_table} ({', '.join(columns)}) "
        f"SELECT {', '.join(values)} {_ROWS_SQL}"
    )
    return sql, defaults


def seeded_job_count(cursor) -> int:
    cursor.execute(f"SELECT count(*) FROM {Job._meta.db_table} WHERE source = %s", [SEED_SOURCE])
    return cursor.fetchone()[0]


def seed_jobs(cursor, *, store_id: int, owner_id: int, target: int) -> int:
    """Insert seeded jobs until there are ``target`` of them; returns how many were inserted.
    More than ``target`` are left as they are (a quick run after a full one keeps the million)."""
    have = seeded_job_count(cursor)
    if have >= target:
        return 0
    sql, defaults = _insert_sql(cursor.db)
    cursor.execute(
        sql,
        {
            **defaults,
            "store": store_id,
            "owner": owner_id,
            "source": SEED_SOURCE,
            "first": have + 1,
            "last": target,
        },
    )
    cursor.execute(f"ANALYZE {Job._meta.db_table}")
    return target - have


def sample_jobs(cursor, *, count: int, seed: int = 7) -> list[tuple[int, str]]:
    """About ``count`` seeded jobs picked at random, as (primary key, public uuid) pairs."""
    cursor.execute(
        f"SELECT min(id), max(id) FROM {Job._meta.db_table} WHERE source = %s", [SEED_SOURCE]
    )
    low, high = cursor.fetchone()
    if low is None:
        return []
    rng = random.Random(seed)
    wanted = rng.sample(range(low, high + 1), min(count, high - low + 1))
    cursor.execute(
        f"SELECT id, uuid FROM {Job._meta.db_table} WHERE source = %s AND id = ANY(%s)",
        [SEED_SOURCE, wanted],
    )
    return [(pk, str(job_uuid)) for pk, job_uuid in cursor.fetchall()]
