"""P5 scaling: one job whose items each take a fixed time (the store's simulated per-item
latency, a tape-like store) run with 1 worker process and then 2; the speed-up against a
linear 2x. The store stages by hard link, so each item's own work is the simulated latency
plus our bookkeeping, not the shared disk's fsync times (P3 measures those)."""

from bench.context import BenchContext
from bench.harness import Result
from bench.workload import job_run, store_with_catalogue, tiny_files_write
from staging.models import SubJob


def subjob_spans(store) -> list[dict]:
    """When each sub-job ran and where, in seconds from the job's creation: shows whether the
    worker processes overlapped."""
    rows = SubJob.objects.filter(job__store=store).select_related("job").order_by("sequence")
    return [
        {
            "sequence": s.sequence,
            "worker": s.worker.rpartition(":")[2],
            "started": round((s.started_at - s.job.created_at).total_seconds(), 3),
            "finished": round((s.finished_at - s.job.created_at).total_seconds(), 3),
        }
        for s in rows
    ]


def run(ctx: BenchContext) -> list[Result]:
    sizes = ctx.sizes
    ctx.work_reset()
    root = ctx.temp_dir / "scaling"
    tiny_files_write(root / "archive", sizes.scaling_items)
    seconds, spans = {}, {}
    subjobs = 0
    try:
        for processes in (1, 2):
            ctx.workers(processes)
            # A store per run: a second run into the same staging root would find every file
            # already staged and skip it.
            store, files = store_with_catalogue(
                f"bench-tape-{processes}",
                root / "archive",
                root / f"staging-{processes}",
                simulated_latency_ms=sizes.scaling_latency_ms,
                hard_link=True,
            )
            seconds[processes] = job_run(store, files, timeout=300)
            spans[processes] = subjob_spans(store)
            subjobs = len(spans[processes])
    finally:
        ctx.work_reset()
    speedup = seconds[1] / seconds[2]
    floor = sizes.scaling_items * sizes.scaling_latency_ms / 1000
    return [
        Result(
            "P5",
            f"scaling: {sizes.scaling_items} items x {sizes.scaling_latency_ms} ms, "
            "1 → 2 worker processes",
            "speed-up",
            speedup,
            2.0,
            "linear: 2.0x",
            details={
                "items": sizes.scaling_items,
                "latency_ms": sizes.scaling_latency_ms,
                "subjobs": subjobs,
                "seconds_1_process": round(seconds[1], 3),
                "seconds_2_processes": round(seconds[2], 3),
                "latency_floor_seconds_1_process": floor,
                "subjob_spans": spans,
            },
            note=f"{seconds[1]:.2f}s with 1, {seconds[2]:.2f}s with 2 ({subjobs} sub-jobs)",
        )
    ]
