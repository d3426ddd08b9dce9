"""D1 fairness: user B's small job (10 files) submitted 1 s after user A's large one (20,000
files) on the same tape-like store (simulated latency per item), 4 worker processes: B's time
from submit to FINISHED beside A, against B's time alone on an idle service. Goal: at most 2x.

A is cancelled once B has finished and A's rate is measured: the run never waits for A. What
first in, first out (every sub-job published at submit, as before the dispatcher) would give B
is estimated from that rate: A's files not done when B arrived, drained at A's rate, then B's
time alone. A second run slices A's job in sub-jobs of 10 files instead of the service's 50:
one of A's running sub-jobs gives way to B at a file boundary (staging.services.preemption),
and that second line shows what the size of A's sub-jobs still costs B."""

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import override_settings

from bench.context import BenchContext, jobs_wait
from bench.harness import Result, wait_until
from bench.sampling import (
    fifo_estimate,
    files_per_second,
    in_flight_bound,
    in_flight_env,
    slowdown,
)
from bench.workload import finished_subjob_spans, latency_store, tiny_files_write
from staging.models import TERMINAL_STATUSES, Job, Store, SubJob
from staging.services.jobs import job_cancel, job_create_staging

PROCESSES = 4
SMALL_JOB_DELAY = 1.0
ALONE_REPEATS = 3
GOAL = 2.0
# A second run slices A finer, to show what the size of the sub-jobs ahead costs B.
FINER_SUBJOB_FILES = 10


def owner(name: str):
    return get_user_model().objects.get_or_create(username=f"bench-fairness-{name}")[0]


def job_seconds(store: Store, files, *, by, timeout: float) -> tuple[Job, float]:
    started = time.time()
    job = job_create_staging(owner=by, store=store, files=files, source="bench")
    return job, jobs_wait([job.pk], timeout=timeout) - started


def small_job_alone(root: Path, latency_ms: int, small: int, by) -> list[float]:
    """B's time alone, a few times (a store per run: a second run would find the copies)."""
    seconds = []
    for attempt in range(ALONE_REPEATS):
        store, files = latency_store(
            f"bench-fair-alone-{attempt}",
            root / "archive-small",
            root / f"staging-alone-{attempt}",
            latency_ms,
        )
        seconds.append(job_seconds(store, files, by=by, timeout=120)[1])
    return seconds


@dataclass
class Contended:
    """What one run of B beside A measured (times in seconds)."""

    small_seconds: float
    small_dispatch_waited: float  # from B's submit to its sub-job's handing to the broker
    small_waited: float  # from B's submit to its sub-job's start
    big_subjob_files: int
    big_subjob_seconds: float  # mean duration of A's sub-jobs
    big_files_ahead: int  # A's files not done when B was submitted (estimated from A's rate)
    big_files_per_second: float
    big_ends_before_small_started: int  # A's sub-jobs that ended while B waited

    def fifo(self, alone: float) -> float:
        return fifo_estimate(
            files_ahead=self.big_files_ahead,
            files_per_second=self.big_files_per_second,
            alone=alone,
        )


def contended_run(
    root: Path, slug: str, *, latency_ms: int, users, subjob_files: int | None = None
) -> Contended:
    """A's job, then 1 s later B's on the same store; B timed to FINISHED, A's rate measured
    over a few rounds of its sub-jobs, then A cancelled. ``subjob_files`` slices A's job more
    finely than the service's setting (SUBJOB_MAX_FILES, read at submission)."""
    user_a, user_b = users
    store, files = latency_store(slug, root / "archive", root / f"staging-{slug}", latency_ms)
    files_a = [f for f in files if f.path.startswith("a/")]
    files_b = [f for f in files if f.path.startswith("b/")]
    slicing = {**settings.STAGING}
    if subjob_files:
        slicing["SUBJOB_MAX_FILES"] = subjob_files
    with override_settings(STAGING=slicing):
        job_a = job_create_staging(owner=user_a, store=store, files=files_a, source="bench")
    time.sleep(SMALL_JOB_DELAY)
    job_b, beside = job_seconds(store, files_b, by=user_b, timeout=600)
    # A's rate over a few rounds of its sub-jobs (at least one per worker process, twice).
    wait_until(
        lambda: len(finished_subjob_spans(job=job_a)) >= 2 * PROCESSES,
        timeout=300,
        what="A's sub-jobs to end a few times",
    )
    spans = finished_subjob_spans(job=job_a)
    rate = files_per_second(spans)
    job_cancel(job=job_a)
    wait_until(
        lambda: Job.objects.filter(pk=job_a.pk, status__in=TERMINAL_STATUSES).exists(),
        timeout=120,
        what="A to end after its cancel",
    )
    b_subjob = SubJob.objects.get(job=job_b)
    b_started = b_subjob.started_at.timestamp()
    b_submitted = job_b.created_at.timestamp()
    a_began = min(started for started, _, _ in spans)
    return Contended(
        small_seconds=beside,
        small_dispatch_waited=b_subjob.dispatched_at.timestamp() - b_submitted,
        small_waited=b_started - b_submitted,
        big_subjob_files=max(files for _, _, files in spans),
        big_subjob_seconds=sum(end - start for start, end, _ in spans) / len(spans),
        big_files_ahead=len(files_a) - min(len(files_a), round(rate * (b_submitted - a_began))),
        big_files_per_second=rate,
        big_ends_before_small_started=sum(b_submitted < end <= b_started for _, end, _ in spans),
    )


def run(ctx: BenchContext) -> list[Result]:
    sizes = ctx.sizes
    big, small, latency_ms = sizes.fairness_big_files, 10, sizes.fairness_latency_ms
    ctx.work_reset()
    root = ctx.temp_dir / "fairness"
    tiny_files_write(root / "archive" / "a", big, durable=False)
    tiny_files_write(root / "archive" / "b", small, durable=False, prefix="b")
    tiny_files_write(root / "archive-small" / "b", small, durable=False, prefix="b")
    users = owner("a"), owner("b")
    # This process submits as the web service would, with the workers' bound: a submission
    # asks running sub-jobs to give way when that bound is reached.
    bounded = {**settings.STAGING, "DISPATCH_MAX_IN_FLIGHT": in_flight_bound(PROCESSES)}
    try:
        ctx.workers(PROCESSES, **in_flight_env(PROCESSES))
        with override_settings(STAGING=bounded):
            alone_runs = small_job_alone(root, latency_ms, small, users[1])
            ours = contended_run(root, "bench-fair", latency_ms=latency_ms, users=users)
            finer = contended_run(
                root,
                "bench-fair-finer",
                latency_ms=latency_ms,
                users=users,
                subjob_files=FINER_SUBJOB_FILES,
            )
    finally:
        ctx.work_reset()
    alone = sorted(alone_runs)[len(alone_runs) // 2]
    name = (
        f"fairness: {small}-file job of user B 1 s after user A's {big:,}-file job, "
        f"{latency_ms} ms/item, {PROCESSES} worker processes"
    )
    common = {
        "big_files": big,
        "small_files": small,
        "latency_ms": latency_ms,
        "worker_processes": PROCESSES,
        "in_flight_bound": in_flight_bound(PROCESSES),
        "small_job_seconds_alone_runs": [round(s, 3) for s in alone_runs],
    }
    return [
        fairness_result(name, ours, alone, common),
        fairness_result(
            f"{name}; A in sub-jobs of {FINER_SUBJOB_FILES} files (SUBJOB_MAX_FILES)",
            finer,
            alone,
            common,
        ),
    ]


def fairness_result(name: str, run: Contended, alone: float, common: dict) -> Result:
    times = slowdown(run.small_seconds, alone)
    fifo = run.fifo(alone)
    met = times <= GOAL
    return Result(
        "D1",
        name,
        "s",
        run.small_seconds,
        alone,
        f"B's job alone (goal: ≤ {GOAL:g}x, ratio ≥ {1 / GOAL:g})",
        higher_is_better=False,
        details={
            **common,
            **{key: round(value, 3) for key, value in asdict(run).items()},
            "slowdown": round(times, 3),
            "goal_slowdown": GOAL,
            "goal_met": met,
            "fifo_estimate_seconds": round(fifo, 1),
            "fifo_estimate_slowdown": round(fifo / alone, 1),
        },
        note=(
            f"B took {run.small_seconds:.2f}s beside A, {alone:.2f}s alone: {times:.2f}x (goal "
            f"≤ {GOAL:g}x {'met' if met else 'NOT met'}); B's sub-job went to the broker "
            f"{run.small_dispatch_waited:.2f}s and started {run.small_waited:.2f}s after its "
            f"submit, after {run.big_ends_before_small_started}"
            f" of A's sub-jobs ended (A's: {run.big_subjob_files} files, "
            f"{run.big_subjob_seconds:.2f}s each). First in, first out: about {fifo:.0f}s "
            f"({fifo / alone:.0f}x), {run.big_files_ahead:,} files of A ahead at "
            f"{run.big_files_per_second:.0f} files/s"
        ),
    )
