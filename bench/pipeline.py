"""P2 pipeline: 1-file jobs per second end to end (submit → FINISHED) with 2 worker processes
on Redis + PostgreSQL, against Celery no-op tasks with the django-db result backend on the same
broker, database and worker command."""

import time

from celery import current_app

from bench.context import BenchContext, elapsed_since, jobs_wait, tasks_wait
from bench.harness import Result
from bench.noop_tasks import NOOP_TASK
from bench.profiling import format_summary, summarise_file
from bench.workload import bench_owner, store_with_catalogue, tiny_files_write
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


def run(ctx: BenchContext) -> list[Result]:
    sizes = ctx.sizes
    ctx.work_reset()
    worker_pid = ctx.workers(2)
    root = ctx.temp_dir / "pipeline"
    count = sizes.pipeline_jobs
    profile_jobs = count // 2 if ctx.profile else 0
    tiny_files_write(root / "archive", WARMUP + count + profile_jobs)
    store, files = store_with_catalogue("bench-pipeline", root / "archive", root / "staging")
    warmup, measured, profiled = (
        files[:WARMUP],
        files[WARMUP : WARMUP + count],
        files[WARMUP + count :],
    )
    try:
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
            details={"jobs": count, "noop_tasks": sizes.pipeline_noops, "worker_processes": 2},
            note=f"{count} jobs vs {sizes.pipeline_noops} no-op tasks",
        )
    ]
