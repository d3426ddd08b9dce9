"""What the benchmarks of one run share: the prepared databases, the web servers and workers
(started on first use, stopped with the run), the broker corner, and where files go.

The run's own process uses the small database as Django's default: the benchmarks that submit
jobs in-process (P2-P5) do so there, and their rows are deleted again before and after."""

import json
import subprocess
from pathlib import Path

import psycopg
import redis
from django.conf import settings
from psycopg import sql

from bench.harness import (
    LARGE_DB,
    PYTHON,
    REPO_ROOT,
    SMALL_DB,
    Sizes,
    Supervisor,
    service_env,
    wait_until,
)
from bench.profiling import Profiler
from bench.query_count import statements_sent

DATABASES = {"large": LARGE_DB, "small": SMALL_DB}
PREPARE_TIMEOUT = 900


def database_ensure(name: str) -> bool:
    """Create the bench database if it is missing; True if it was created."""
    with psycopg.connect(f"{settings.BENCH_POSTGRES_URL}/postgres", autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


class BenchContext:
    def __init__(
        self,
        *,
        sizes: Sizes,
        supervisor: Supervisor,
        temp_dir: Path,
        results_dir: Path,
        stamp: str,
        profile: bool = False,
        large_jobs: int | None = None,
    ):
        self.sizes = sizes
        self.supervisor = supervisor
        self.temp_dir = temp_dir
        self.results_dir = results_dir
        self.stamp = stamp
        self.profile = profile
        self.large_jobs = large_jobs or sizes.large_jobs
        self.profiles: dict[str, dict] = {}
        self._prepared: dict[str, dict] = {}
        self._web: dict[str, str] = {}
        self._worker_setup: tuple | None = None

    # --- databases --------------------------------------------------------------------------

    def database(self, which: str) -> dict:
        """The prepared bench database ``which`` ("large" or "small"): migrated, seeded, with a
        fresh token; returns what bench.prepare reported."""
        if which not in self._prepared:
            name = DATABASES[which]
            created = database_ensure(name)
            jobs = self.large_jobs if which == "large" else self.sizes.small_jobs
            output = self.temp_dir / f"prepared-{which}.json"
            log_path = self.supervisor.log_path(f"prepare-{which}")
            print(f"  preparing {name} (at least {jobs:,} seeded jobs{', new' if created else ''})")
            with open(log_path, "ab") as log:
                completed = subprocess.run(
                    [
                        PYTHON,
                        "-m",
                        "bench.prepare",
                        "--jobs",
                        str(jobs),
                        "--sample",
                        str(self.sizes.poll_ids),
                        "--output",
                        str(output),
                    ],
                    cwd=REPO_ROOT,
                    env=service_env(name),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=PREPARE_TIMEOUT,
                    check=False,
                )
            if completed.returncode != 0:
                raise RuntimeError(f"preparing {name} failed:\n{log_path.read_text()[-3000:]}")
            info = json.loads(output.read_text())
            if info["inserted"]:
                print(f"  seeded {info['inserted']:,} jobs into {name} in {info['seconds']}s")
            self._prepared[which] = info
        return self._prepared[which]

    def work_reset(self) -> None:
        """Delete every row the in-process benchmarks made in the small database (their jobs,
        stores, catalogue entries, Celery results), keeping the seeded jobs."""
        from django_celery_results.models import TaskResult

        from bench.prepare import SEED_STORE
        from bench.seed import SEED_SOURCE
        from staging.models import File, Item, Job, Pin, Store, SubJob

        work_jobs = Job.objects.exclude(source=SEED_SOURCE)
        Item.objects.filter(job__in=work_jobs).delete()
        Pin.objects.filter(job__in=work_jobs).delete()
        SubJob.objects.filter(job__in=work_jobs).delete()
        work_jobs.delete()
        work_stores = Store.objects.exclude(slug=SEED_STORE)
        File.objects.filter(store__in=work_stores).delete()
        work_stores.delete()
        TaskResult.objects.all().delete()

    # --- broker -----------------------------------------------------------------------------

    def broker_flush(self) -> int:
        """Empty the bench's corner of Redis (its queues, results of revokes, bindings)."""
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=2)
        keys = list(client.scan_iter(match=f"{settings.BROKER_KEY_PREFIX}*", count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)

    # --- processes --------------------------------------------------------------------------

    def web(self, which: str) -> str:
        """Base URL of gunicorn serving the bench database ``which`` (started on first use)."""
        if which not in self._web:
            self.database(which)
            self._web[which] = self.supervisor.start_web(f"web-{which}", DATABASES[which])
        return self._web[which]

    def web_pid(self, which: str) -> int:
        return self.supervisor.pid(f"web-{which}")

    def stop_web(self) -> None:
        for which in list(self._web):
            self.supervisor.stop(f"web-{which}")
            del self._web[which]

    def workers(self, concurrency: int, **extra_env: str) -> int:
        """Make sure exactly one celery worker with ``concurrency`` processes (and ``extra_env``
        in its environment, e.g. a dispatch setting) runs on the small database; returns its
        main process id."""
        setup = (concurrency, tuple(sorted(extra_env.items())))
        if self._worker_setup != setup:
            self.stop_workers()
            self.database("small")
            self.supervisor.start_worker("worker", SMALL_DB, concurrency=concurrency, **extra_env)
            self._worker_setup = setup
            # "ready." comes before every child has taken a first message and opened its
            # database connection; a few no-ops keep that start-up out of the first figures.
            from celery import current_app

            from bench.noop_tasks import NOOP_TASK

            warmup = [
                current_app.send_task(NOOP_TASK, queue=queue).id
                for queue in ("staging", "control")
                for _ in range(2 * concurrency)
            ]
            tasks_wait(warmup, timeout=60)
        return self.supervisor.pid("worker")

    def stop_workers(self) -> None:
        self.supervisor.stop("worker")
        self._worker_setup = None

    # --- profiles ---------------------------------------------------------------------------

    def profiler(self, name: str, pid: int) -> Profiler:
        """A py-spy recording of ``pid``'s tree into the results folder (a no-op unless the run
        was asked to --profile)."""
        path = self.results_dir / f"{self.stamp}-{name}.collapsed"
        return Profiler(pid, path, enabled=self.profile)

    def profile_path(self, name: str) -> Path:
        return self.results_dir / f"{self.stamp}-{name}.collapsed"


def jobs_wait(job_ids: list[int], *, timeout: float) -> float:
    """Wait until every job is terminal; returns the latest finished_at as a UNIX time, and
    raises if any did not finish."""
    from django.db.models import Max

    from staging.models import TERMINAL_STATUSES, Item, Job, JobStatus

    wait_until(
        lambda: (
            not Job.objects.filter(pk__in=job_ids).exclude(status__in=TERMINAL_STATUSES).exists()
        ),
        timeout=timeout,
        what=f"{len(job_ids)} jobs to finish",
        every=0.1,
    )
    unfinished = Job.objects.filter(pk__in=job_ids).exclude(status=JobStatus.FINISHED)
    if unfinished.exists():
        errors = list(
            Item.objects.filter(job__in=unfinished)
            .exclude(error="")
            .values_list("error", flat=True)[:5]
        )
        raise RuntimeError(f"{unfinished.count()} jobs did not finish; errors: {errors}")
    latest = Job.objects.filter(pk__in=job_ids).aggregate(latest=Max("finished_at"))["latest"]
    return latest.timestamp()


def tasks_wait(task_ids: list[str], *, timeout: float) -> float:
    """Wait until every Celery task has a SUCCESS result row; returns the latest date_done."""
    from django.db.models import Max
    from django_celery_results.models import TaskResult

    done = TaskResult.objects.filter(task_id__in=task_ids, status="SUCCESS")
    wait_until(
        lambda: done.count() == len(task_ids),
        timeout=timeout,
        what=f"{len(task_ids)} tasks to succeed",
        every=0.1,
    )
    return done.aggregate(latest=Max("date_done"))["latest"].timestamp()


def request_queries(method: str, path: str, body: str | None = None, **headers: str) -> int:
    """Database queries of one request, run in this process (small database) through Django's
    whole handler: middleware, authentication, the view, and what runs on commit."""
    from django.test import Client

    client = Client()
    send = getattr(client, method.lower())
    extra = {"data": body, "content_type": "application/json"} if body is not None else {}
    with statements_sent() as sent:
        response = send(path, **extra, **headers)
    if response.status_code not in (200, 201, 202):
        raise RuntimeError(f"{method} {path} answered {response.status_code} in process")
    return len(sent)


def elapsed_since(start: float, end: float) -> float:
    return max(end - start, 1e-6)
