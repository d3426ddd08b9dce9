"""P2 pipeline: 1-file jobs per second end to end (submit → FINISHED) with 2 worker processes
on Redis + PostgreSQL, against Celery no-op tasks with the django-db result backend on the same
broker, database and worker command."""

import time
import uuid

from celery import current_app
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench.context import BenchContext, elapsed_since, jobs_wait, tasks_wait
from bench.harness import Result
from bench.noop_tasks import NOOP_TASK
from bench.profiling import format_summary, summarise_file
from bench.workload import bench_owner, store_with_catalogue, tiny_files_write
from staging.services.execution import subjob_run, worker_identity
from staging.services.jobs import job_create_staging

WARMUP = 5
PROFILE_BELOW = 0.5


def noops_per_second(count: int) -> float:
    started = time.time()
    ids = [current_app.send_task(NOOP_TASK, queue="staging").id for _ in range(count)]
    return count / elapsed_since(started, tasks_wait(ids, timeout=120 + count / 5))


def jobs_per_second(store, files) -> float:
    owner = bench_owner()
    started = time.time()
    job_ids = [
        job_create_staging(owner=owner, store=store, files=[f], source="bench").pk for f in files
    ]
    return len(files) / elapsed_since(started, jobs_wait(job_ids, timeout=120 + len(files)))


TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


def statements(captured: CaptureQueriesContext) -> int:
    """Queries sent, not counting the transaction control Django logs with them."""
    return sum(
        not query["sql"].startswith(TRANSACTION_CONTROL) for query in captured.captured_queries
    )


def queries_per_job(ctx: BenchContext, store, file) -> tuple[int, int]:
    """Queries of one 1-file job: its submission (with the publish on commit) and its sub-job's
    run, done here in-process while no worker runs (the queued message is then dropped). The
    worker also writes Celery's result rows, as the no-op tasks do; those are not counted, nor
    are BEGIN/COMMIT/SAVEPOINT."""
    ctx.stop_workers()
    owner = bench_owner()
    with CaptureQueriesContext(connection) as submitted:
        job = job_create_staging(owner=owner, store=store, files=[file], source="bench")
    subjob = job.subjobs.get()
    with CaptureQueriesContext(connection) as ran:
        subjob_run(
            subjob_id=subjob.pk,
            worker=worker_identity("bench@in-process"),
            task_id=str(uuid.uuid4()),
        )
    ctx.broker_flush()
    return statements(submitted), statements(ran)


def run(ctx: BenchContext) -> list[Result]:
    sizes = ctx.sizes
    ctx.work_reset()
    root = ctx.temp_dir / "pipeline"
    count = sizes.pipeline_jobs
    profile_jobs = count // 2 if ctx.profile else 0
    tiny_files_write(root / "archive", 1 + WARMUP + count + profile_jobs)
    store, files = store_with_catalogue("bench-pipeline", root / "archive", root / "staging")
    counted, warmup, measured, profiled = (
        files[0],
        files[1 : 1 + WARMUP],
        files[1 + WARMUP : 1 + WARMUP + count],
        files[1 + WARMUP + count :],
    )
    try:
        submit_queries, run_queries = queries_per_job(ctx, store, counted)
        worker_pid = ctx.workers(2)
        noops_per_second(WARMUP)
        baseline = noops_per_second(sizes.pipeline_noops)
        jobs_per_second(store, warmup)
        ours = jobs_per_second(store, measured)
        if profiled:
            with ctx.profiler("P2-worker", worker_pid):
                jobs_per_second(store, profiled)
            summary = summarise_file(ctx.profile_path("P2-worker"))
            ctx.profiles["P2 worker"] = summary
            print(format_summary("P2 worker running 1-file jobs", summary))
    finally:
        ctx.work_reset()
    return [
        Result(
            "P2",
            "pipeline: 1-file jobs end to end, 2 worker processes",
            "jobs/s",
            ours,
            baseline,
            "Celery no-op tasks, django-db results, same broker/DB/worker",
            profile_below=PROFILE_BELOW,
            details={
                "jobs": count,
                "noop_tasks": sizes.pipeline_noops,
                "worker_processes": 2,
                "queries_per_job_submission": submit_queries,
                "queries_per_job_run": run_queries,
            },
            note=(
                f"{count} jobs vs {sizes.pipeline_noops} no-op tasks; a 1-file job takes "
                f"{submit_queries} queries to submit and {run_queries} to run (besides Celery's "
                "result rows and transaction control)"
            ),
        )
    ]
