"""Fast seeding of job rows with one INSERT … SELECT over generate_series (no ORM objects): a
million rows take seconds, and a run tops up what an earlier run left rather than starting over."""

import random

from staging.models import TERMINAL_STATUSES, Job

SEED_SOURCE = "bench-seed"
# Seeded jobs are spread back in time this far apart, so a million span about two years (the
# admin's date hierarchy then has several years and months to offer).
SEED_SPACING_SECONDS = 60

_TERMINAL_SQL = ", ".join(f"'{status}'" for status in sorted(TERMINAL_STATUSES))

# Per hundred jobs: 90 finished, 4 failed, 2 partially failed, 2 cancelled, 1 running, 1 queued.
_INSERT_SQL = f"""
INSERT INTO {Job._meta.db_table} (
    uuid, task, store_id, owner_id, source, parameters, status, files_total, files_done,
    files_failed, bytes_total, bytes_done, result, error, lifetime, idempotency_key,
    created_at, started_at, finished_at, updated_at
)
SELECT
    gen_random_uuid(), 'stage', %(store)s, %(owner)s, %(source)s, '{{}}'::jsonb, t.status,
    t.files,
    CASE WHEN t.status = 'FINISHED' THEN t.files ELSE 0 END,
    CASE WHEN t.status IN ('FAILED', 'PARTIALLY_FAILED') THEN 1 ELSE 0 END,
    t.files * 1048576,
    CASE WHEN t.status = 'FINISHED' THEN t.files * 1048576 ELSE 0 END,
    '{{}}'::jsonb, '', interval '14 days', '',
    t.created, t.created + interval '2 seconds',
    CASE WHEN t.status IN ({_TERMINAL_SQL}) THEN t.created + interval '30 seconds' END,
    t.created + interval '30 seconds'
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


def seeded_job_count(cursor) -> int:
    cursor.execute(f"SELECT count(*) FROM {Job._meta.db_table} WHERE source = %s", [SEED_SOURCE])
    return cursor.fetchone()[0]


def seed_jobs(cursor, *, store_id: int, owner_id: int, target: int) -> int:
    """Insert seeded jobs until there are ``target`` of them; returns how many were inserted.
    More than ``target`` are left as they are (a quick run after a full one keeps the million)."""
    have = seeded_job_count(cursor)
    if have >= target:
        return 0
    cursor.execute(
        _INSERT_SQL,
        {
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
