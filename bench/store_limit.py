"""D2 limit held: one job on a store with ``max_active=2`` and 4 worker processes, the store's
running sub-jobs counted from the database every 50 ms throughout (goal: never more than 2),
and its throughput against the same job run by 2 worker processes on a store without a limit
(goal: about the same, ratio near 1)."""

from bench.context import BenchContext
from bench.harness import Result
from bench.sampling import (
    Sampler,
    in_flight_bound,
    in_flight_env,
    max_within,
    sample_summary,
    slot_use,
)
from bench.workload import finished_subjob_spans, job_run, latency_store, tiny_files_write
from staging.models import JobStatus, Store, SubJob

LIMIT = 2
PROCESSES = 4
SAMPLE_EVERY = 0.05


def running_on(store: Store):
    def read() -> int:
        return SubJob.objects.filter(job__store=store, status=JobStatus.RUNNING).count()

    return read


def close_connection() -> None:
    from django.db import connection

    connection.close()


def sampled_run(store: Store, files) -> tuple[float, list[int]]:
    """The job's seconds from submit to FINISHED and the store's running sub-jobs meanwhile."""
    sampler = Sampler(running_on(store), every=SAMPLE_EVERY, finish=close_connection)
    with sampler:
        seconds = job_run(store, files, timeout=600)
    return seconds, sampler.values()


def run(ctx: BenchContext) -> list[Result]:
    sizes = ctx.sizes
    count, latency_ms = sizes.limit_files, sizes.limit_latency_ms
    ctx.work_reset()
    root = ctx.temp_dir / "store-limit"
    tiny_files_write(root / "archive", count, durable=False)
    seconds, running, use = {}, {}, {}
    try:
        for processes, limit in ((PROCESSES, LIMIT), (LIMIT, None)):
            ctx.workers(processes, **in_flight_env(processes))
            store, files = latency_store(
                f"bench-limit-{processes}",
                root / "archive",
                root / f"staging-{processes}",
                latency_ms,
                max_active=limit,
            )
            seconds[processes], running[processes] = sampled_run(store, files)
            spans = finished_subjob_spans(job__store=store)
            use[processes] = slot_use(spans, LIMIT)
            subjobs = len(spans)
    finally:
        ctx.work_reset()
    limited, alone = count / seconds[PROCESSES], count / seconds[LIMIT]
    observed = sample_summary(running[PROCESSES])
    held = max_within(observed, LIMIT)
    return [
        Result(
            "D2",
            f"limit held: store max_active={LIMIT}, {PROCESSES} worker processes, "
            f"{count:,} items x {latency_ms} ms",
            "files/s",
            limited,
            alone,
            f"{LIMIT} worker processes on a store without a limit (goal: ratio ≈ 1)",
            details={
                "files": count,
                "latency_ms": latency_ms,
                "subjobs": subjobs,
                "limit": LIMIT,
                "worker_processes": PROCESSES,
                "in_flight_bound": in_flight_bound(PROCESSES),
                "baseline_in_flight_bound": in_flight_bound(LIMIT),
                "seconds_limited": round(seconds[PROCESSES], 3),
                "seconds_baseline": round(seconds[LIMIT], 3),
                "running_sampled_every_seconds": SAMPLE_EVERY,
                "running_limited": observed,
                "running_baseline": sample_summary(running[LIMIT]),
                "limit_held": held,
                # Busy share of the 2 slots from the first sub-job's start to the last's end:
                # what the limited run loses between one sub-job's end and the next's start.
                "slot_use_limited": round(use[PROCESSES], 3),
                "slot_use_baseline": round(use[LIMIT], 3),
            },
            note=(
                f"at most {observed['max']} of the store's sub-jobs running in "
                f"{observed['samples']} samples (goal ≤ {LIMIT}: {'held' if held else 'NOT held'}"
                f"); {seconds[PROCESSES]:.2f}s limited vs {seconds[LIMIT]:.2f}s with "
                f"{LIMIT} processes ({subjobs} sub-jobs); the {LIMIT} slots busy "
                f"{use[PROCESSES]:.0%} of the time limited, {use[LIMIT]:.0%} in the baseline"
            ),
        )
    ]
