"""P9 latency while working: the DTS status poll at a fixed rate (200 requests/s, about 12,000
DTS pollers at one poll a minute), open-loop (bench.openloop: latency from each request's
scheduled send), while staging jobs copy P3's tree (about 1 GiB) on the same machine; against
the same poll with nothing staging. p99 is the figure, p50 in the note.

The poll goes to the large database's gunicorn (P1's, production's gunicorn settings); the jobs
run on the small database with 2 worker processes, as in P3: one PostgreSQL server, one disk,
two cores for all of it. The busy window is exactly the staging: the poll starts as the first
job is submitted and stops when the last one has finished; the idle poll lasts as long."""

import shutil
import time

from bench.context import BenchContext
from bench.copying import archive_write
from bench.harness import Result
from bench.openloop import OpenLoopProcess, OpenLoopReport, run_open_loop
from bench.profiling import format_summary, summarise_file
from bench.status_poll import ENDPOINTS, check_answer, poll_target
from bench.workload import job_run, store_with_catalogue

GOAL_P99_MS = 50
MAX_ERROR_SHARE = 0.001
DTS_POLL = next(e for e in ENDPOINTS if e.key == "dts")


def run(ctx: BenchContext) -> list[Result]:
    sizes = ctx.sizes
    info, base_url, ids_file = poll_target(ctx)
    token = info["token"]
    check_answer(base_url, DTS_POLL, *info["sample"][0], token)
    poll = {
        "base_url": base_url,
        "path_template": DTS_POLL.path,
        "ids_file": ids_file,
        "rate": sizes.latency_rate,
        "token": token,
    }

    ctx.work_reset()
    ctx.workers(2)
    root = ctx.temp_dir / "latency"
    try:
        count, total = archive_write(root / "archive", sizes)
        # Every job has a store of its own (scanned before the window): a second job for the
        # same files would find them staged already.
        stores = [
            store_with_catalogue(f"bench-latency-{n}", root / "archive", root / f"staged-{n}")
            for n in range(sizes.latency_jobs + (1 if ctx.profile else 0))
        ]
        profiled = stores.pop() if ctx.profile else None
        run_open_loop(**poll, seconds=1)  # unmeasured: connections opened, caches warm
        started = time.perf_counter()
        with OpenLoopProcess(**poll) as busy_poll:
            for store, files in stores:
                job_run(store, files, timeout=600)
        staging_seconds = time.perf_counter() - started
        busy = busy_poll.report
        idle = run_open_loop(**poll, seconds=staging_seconds)
        if profiled is not None:
            # An unmeasured window of its own: the sampler takes CPU the measured one must not.
            with ctx.profiler("P9-web", ctx.web_pid("large")), OpenLoopProcess(**poll):
                job_run(*profiled, timeout=600)
            summary = summarise_file(ctx.profile_path("P9-web"))
            ctx.profiles["P9 web"] = summary
            print(format_summary("P9 web answering the poll while staging", summary))
    finally:
        ctx.work_reset()
        shutil.rmtree(root, ignore_errors=True)
    for label, report in (("while staging", busy), ("idle", idle)):
        if report.errors > report.requests * MAX_ERROR_SHARE:
            raise RuntimeError(f"P9 poll {label}: {report.errors} errors in {report.requests}")

    staged_bytes = total * sizes.latency_jobs
    return [
        Result(
            "P9",
            f"latency: p99 of the DTS poll at {sizes.latency_rate}/s while staging "
            f"{staged_bytes / 1024**2:,.0f} MiB",
            "ms",
            busy.p99_ms,
            idle.p99_ms,
            f"the same open-loop poll with nothing staging (goal: p99 ≤ {GOAL_P99_MS} ms)",
            higher_is_better=False,
            details={
                "busy": busy.as_dict(),
                "idle": idle.as_dict(),
                "jobs": sizes.latency_jobs,
                "files_per_job": count,
                "bytes_per_job": total,
                "staging_seconds": round(staging_seconds, 2),
                "staging_mb_per_s": round(staged_bytes / 1e6 / staging_seconds, 1),
                "goal_p99_ms": GOAL_P99_MS,
                "jobs_in_database": info["jobs"],
            },
            note=_note(busy, idle, staged_bytes, staging_seconds),
        )
    ]


def _note(busy: OpenLoopReport, idle: OpenLoopReport, staged: int, seconds: float) -> str:
    goal = "met" if busy.p99_ms <= GOAL_P99_MS else "NOT met"
    return (
        f"p50 {busy.p50_ms:.1f} ms vs {idle.p50_ms:.1f} ms idle, max {busy.max_ms:.0f} ms; "
        f"{busy.requests:,} requests over {seconds:.1f}s of staging at "
        f"{staged / 1e6 / seconds:,.0f} MB/s; send lag p99 {busy.send_lag_p99_ms:.1f} ms; "
        f"goal p99 ≤ {GOAL_P99_MS} ms {goal}"
    )
