"""Time the staff admin's pages over HTTP with a large jobs table (PostgreSQL only).

    .venv/bin/python bench/admin_changelist.py --jobs 1000000   # seed (once) and measure
    .venv/bin/python bench/admin_changelist.py --jobs 1000      # the same pages, small table

Each size gets its own database (stagingsvc_admin_<jobs>), created, migrated and seeded with
generate_series on first use (a million jobs take about a minute). The script then starts
gunicorn on a free loopback port against it, logs in through the admin login form as a staff
user, renders each page a few times and prints the median, and stops the server.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import requests

REPO = Path(__file__).resolve().parent.parent
PG = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
STAFF, PASSWORD = "bench-staff", "bench-staff-password"
OWNERS = 1000

PAGES = [
    ("job list", "/admin/staging/job/"),
    ("job list, status filter", "/admin/staging/job/?status__exact=FAILED"),
    ("job list, owner filter", "/admin/staging/job/?owner=bench-user-7"),
    ("job list, task filter", "/admin/staging/job/?task=restore-content"),
    (
        "job list, one month",
        "/admin/staging/job/?created_at__year={year}&created_at__month={month}",
    ),
    ("job list, page 50", "/admin/staging/job/?p=50"),
    ("job search by path", "/admin/staging/job/?q=bench/00000042/"),
    ("job search by job id", "/admin/staging/job/?q={uuid}"),
    ("job page", "/admin/staging/job/{pk}/change/"),
    ("dashboard", "/admin/dashboard/"),
]

SEED_SQL = """
INSERT INTO staging_job (uuid, task, store_id, owner_id, source, parameters, status,
    files_total, files_done, files_failed, bytes_total, bytes_done, result, error, lifetime,
    idempotency_key, request_hash, created_at, started_at, finished_at, updated_at)
SELECT gen_random_uuid(),
       CASE WHEN i %% 10 = 0 THEN 'restore-content' ELSE 'stage' END,
       %(store)s,
       %(first_owner)s + (i %% %(owners)s),
       'bench', '{}'::jsonb,
       s.status,
       1, CASE WHEN s.status = 'FINISHED' THEN 1 ELSE 0 END,
       CASE WHEN s.status IN ('FAILED', 'PARTIALLY_FAILED') THEN 1 ELSE 0 END,
       1048576, CASE WHEN s.status = 'FINISHED' THEN 1048576 ELSE 0 END,
       '{}'::jsonb,
       CASE WHEN s.status = 'FAILED' THEN 'bench failure' ELSE '' END,
       interval '14 days', '', '',
       c.created, c.created + interval '5 seconds',
       CASE WHEN s.status IN ('NOT_STARTED', 'RUNNING') THEN NULL
            ELSE c.created + interval '25 seconds' END,
       c.created
FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS i,
     LATERAL (SELECT now() - (%(total)s - i) * interval '30 seconds' AS created) AS c,
     LATERAL (SELECT CASE
         WHEN i > %(total)s - 20 THEN 'RUNNING'
         WHEN i > %(total)s - 50 THEN 'NOT_STARTED'
         WHEN i %% 20 = 3 THEN 'FAILED'
         WHEN i %% 33 = 5 THEN 'PARTIALLY_FAILED'
         WHEN i %% 50 = 7 THEN 'CANCELLED'
         ELSE 'FINISHED' END AS status) AS s
"""

ITEMS_SQL = """
INSERT INTO staging_item (job_id, path, size, status, bytes_done, attempts, error)
SELECT j.id, 'bench/' || lpad(j.id::text, 8, '0') || '/data.bin', 1048576,
       CASE WHEN j.status = 'PARTIALLY_FAILED' THEN 'FAILED' WHEN j.status = 'CANCELLING'
            THEN 'CANCELLED' ELSE j.status END,
       j.bytes_done, 1, j.error
FROM staging_job j WHERE j.source = 'bench' AND j.id > %(after)s
"""

SUBJOBS_SQL = """
INSERT INTO staging_subjob (job_id, sequence, status, celery_task_id, attempts, worker,
    files_total, files_done, bytes_total, bytes_done, bytes_per_second, error, created_at,
    started_at, finished_at)
SELECT j.id, 1, CASE WHEN j.status = 'PARTIALLY_FAILED' THEN 'FAILED' ELSE j.status END, '',
       1, 'celery@bench-host:1', 1, j.files_done, j.bytes_total, j.bytes_done, 0, '',
       j.created_at, j.started_at, j.finished_at
FROM staging_job j WHERE j.source = 'bench' AND j.created_at > now() - interval '2 days'
  AND j.id > %(after)s
"""


def database_prepare(name: str, jobs: int) -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    env = server_env(name)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=REPO, env=env, check=True
    )
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "--verbosity", "0"],
        cwd=REPO,
        env=env,
        check=True,
    )
    with psycopg.connect(f"{PG}/{name}", autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM staging_job").fetchone()[0]
        if have >= jobs:
            return
        started = time.monotonic()
        store = conn.execute(
            "INSERT INTO staging_store (slug, description, kind, archive_root, staging_root,"
            " is_primary, hard_link, simulated_latency_ms, created_at) VALUES ('bench', '',"
            " 'posix', '/nonexistent/a', '/nonexistent/s', false, false, 0, now())"
            " ON CONFLICT (slug) DO UPDATE SET slug = excluded.slug RETURNING id"
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO auth_user (username, password, is_superuser, is_staff, is_active,"
            " first_name, last_name, email, date_joined)"
            " SELECT 'bench-user-' || n, '!', false, false, true, '', '', '', now()"
            " FROM generate_series(0, %s) n ON CONFLICT (username) DO NOTHING",
            [OWNERS - 1],
        )
        first_owner = conn.execute(
            "SELECT id FROM auth_user WHERE username = 'bench-user-0'"
        ).fetchone()[0]
        after = conn.execute("SELECT coalesce(max(id), 0) FROM staging_job").fetchone()[0]
        batch = 200_000
        for start in range(have + 1, jobs + 1, batch):
            conn.execute(
                SEED_SQL,
                {
                    "store": store,
                    "first_owner": first_owner,
                    "owners": OWNERS,
                    "start": start,
                    "stop": min(start + batch - 1, jobs),
                    "total": jobs,
                },
            )
            print(f"  jobs: {min(start + batch - 1, jobs):,} / {jobs:,}", flush=True)
        conn.execute(ITEMS_SQL, {"after": after})
        conn.execute(SUBJOBS_SQL, {"after": after})
        conn.execute("VACUUM ANALYZE")
        print(f"  seeded {jobs - have:,} jobs in {time.monotonic() - started:.0f} s", flush=True)
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", STAFF_SNIPPET],
        cwd=REPO,
        env=env,
        check=True,
    )


STAFF_SNIPPET = f"""
from django.contrib.auth.models import Group, User
user, _ = User.objects.get_or_create(username={STAFF!r}, defaults={{"is_staff": True}})
user.is_staff = True
user.set_password({PASSWORD!r})
user.save()
user.groups.add(Group.objects.get(name="data-admin"))
"""


def server_env(name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        DJANGO_SETTINGS_MODULE="stagingsvc.settings.base",
        DATABASE_URL=f"{PG}/{name}",
        # A broker nobody else uses: the dashboard pings it (no workers answer).
        CELERY_BROKER_URL=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/15"),
        STATIC_ROOT=str(REPO / "var" / "bench-static"),
        LOG_LEVEL="WARNING",
    )
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def login(base: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{base}/admin/login/", timeout=30).raise_for_status()
    response = session.post(
        f"{base}/admin/login/",
        data={
            "username": STAFF,
            "password": PASSWORD,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "next": "/admin/",
        },
        headers={"Referer": f"{base}/admin/login/"},
        allow_redirects=False,
        timeout=30,
    )
    if response.status_code != 302:
        raise RuntimeError(f"login failed: {response.status_code}")
    return session


def measure(name: str, renders: int) -> list[tuple[str, float]]:
    with psycopg.connect(f"{PG}/{name}") as conn:
        pk, job_uuid, created = conn.execute(
            "SELECT id, uuid, created_at FROM staging_job WHERE status = 'FAILED'"
            " ORDER BY id DESC LIMIT 1"
        ).fetchone()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--threads",
            "1",
            "stagingsvc.wsgi",
        ],
        cwd=REPO,
        env=server_env(name),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{base}/healthz", timeout=10)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        session = login(base)
        results = []
        for label, path in PAGES:
            url = base + path.format(pk=pk, uuid=job_uuid, year=created.year, month=created.month)
            times = []
            for _ in range(renders + 1):  # the first render warms caches and is not counted
                started = time.perf_counter()
                response = session.get(url, timeout=120)
                times.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise RuntimeError(f"{url}: {response.status_code}")
            results.append((label, statistics.median(times[1:]) * 1000))
        return results
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--renders", type=int, default=5)
    args = parser.parse_args()
    name = f"stagingsvc_admin_{args.jobs}"
    database_prepare(name, args.jobs)
    print(f"{'page':<28} {'median ms':>10}   ({args.jobs:,} jobs, {args.renders} renders each)")
    for label, ms in measure(name, args.renders):
        print(f"{label:<28} {ms:>10.1f}")


if __name__ == "__main__":
    main()
