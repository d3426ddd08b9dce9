"""D3 broker bounded: 100,000 sub-jobs waiting in the database (one file each, written through
the service's submission path), 2 worker processes taking them, and the broker's staging
messages (waiting in the queue + delivered and not yet acknowledged) read every 50 ms for a
bounded time. Goal: never more than the in-flight bound (worker processes + prefetch).

The rows are written while no worker runs, then the broker is emptied and the first dispatch
pass runs in this process (timed: a pass over all that waits), as beat would run it; the
workers' own passes after each sub-job's end go on from there. The run lasts
``broker_seconds``, not until the 100,000 are done. One file is one sub-job
(``SUBJOB_MAX_FILES=1`` for the submissions), so sub-jobs end and free their slots as fast as
the workers can go: the bound is tested as often as it can be. The jobs share one small archive
tree (a file in several jobs is staged once, then found)."""

import time

import redis
from django.conf import settings
from django.db import connection
from django.test import override_settings

from bench.context import BenchContext
from bench.harness import Result
from bench.sampling import (
    Sampler,
    delivered_task_ids,
    in_flight_bound,
    in_flight_env,
    max_within,
    sample_summary,
    staging_messages,
)
from bench.workload import bench_owner, store_with_catalogue, tiny_files_write
from staging.models import JobStatus, SubJob
from staging.services.dispatch import subjobs_dispatch
from staging.services.jobs import job_create_staging
from staging.services.publishing import STAGING_QUEUE

PROCESSES = 2
FILES_PER_JOB = 1_000
SAMPLE_EVERY = 0.05


def broker_reader(bound: int):
    """A function that reads the staging queue's messages and, apart, those waiting in its
    list, in one MULTI/EXEC (a message moving from the list to the unacknowledged hash between
    two reads would count twice). Above ``bound`` it also counts the delivered messages whose
    sub-job has already ended in the database (run, not yet acknowledged)."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=2)
    prefix = settings.BROKER_KEY_PREFIX

    def read() -> tuple[int, int, int]:
        with client.pipeline(transaction=True) as pipe:
            pipe.llen(f"{prefix}{STAGING_QUEUE}")
            pipe.hvals(f"{prefix}unacked")
            waiting, unacked = pipe.execute()
        messages = staging_messages(waiting, unacked, STAGING_QUEUE)
        ended = 0
        if messages > bound:
            ended = (
                SubJob.objects.filter(celery_task_id__in=delivered_task_ids(unacked, STAGING_QUEUE))
                .exclude(status__in=[JobStatus.NOT_STARTED, JobStatus.RUNNING])
                .count()
            )
        return messages, waiting, ended

    def close() -> None:
        client.close()
        connection.close()

    return read, close


def pending_seed(store, files, subjobs: int) -> float:
    """``subjobs`` one-file sub-jobs in jobs of ``FILES_PER_JOB``; returns the seconds taken."""
    owner = bench_owner()
    started = time.monotonic()
    one_file = {"SUBJOB_MAX_FILES": 1, "SUBJOB_MAX_LINKS": 1}  # the store stages by hard link
    with override_settings(STAGING={**settings.STAGING, **one_file}):
        for start in range(0, subjobs, FILES_PER_JOB):
            batch = files[: min(FILES_PER_JOB, subjobs - start)]
            job_create_staging(owner=owner, store=store, files=batch, source="bench")
    return time.monotonic() - started


def ended_count(store) -> int:
    return SubJob.objects.filter(
        job__store=store, status__in=[JobStatus.FINISHED, JobStatus.FAILED]
    ).count()


def run(ctx: BenchContext) -> list[Result]:
    sizes = ctx.sizes
    pending, window = sizes.broker_pending_subjobs, sizes.broker_seconds
    bound = in_flight_bound(PROCESSES)
    ctx.work_reset()
    root = ctx.temp_dir / "broker-bound"
    tiny_files_write(root / "archive", min(FILES_PER_JOB, pending), durable=False)
    try:
        ctx.stop_workers()
        store, files = store_with_catalogue(
            "bench-broker", root / "archive", root / "staging", hard_link=True
        )
        seed_seconds = pending_seed(store, files, pending)
        waiting_rows = SubJob.objects.filter(job__store=store, dispatched_at__isnull=True).count()
        ctx.broker_flush()  # the wakes of the submissions: the run wakes the dispatcher itself
        ctx.workers(PROCESSES, **in_flight_env(PROCESSES))
        read, close = broker_reader(bound)
        sampler = Sampler(read, every=SAMPLE_EVERY, finish=close)
        with sampler:
            # The first pass here, timed: what one pass costs with every sub-job waiting (the
            # workers run one after each sub-job's end).
            # This process must count with the workers' bound: every process that runs a pass
            # reads it from its own settings.
            started = time.monotonic()
            with override_settings(STAGING={**settings.STAGING, "DISPATCH_MAX_IN_FLIGHT": bound}):
                first_published = subjobs_dispatch()
            first_pass = time.monotonic() - started
            time.sleep(max(window - first_pass, 0))
            ended = ended_count(store)
            elapsed = time.monotonic() - started
        ctx.stop_workers()  # a warm shutdown hands back what runs
    finally:
        ctx.work_reset()
    held = [messages for messages, _, _ in sampler.values()]
    queued = [waiting for _, waiting, _ in sampler.values()]
    # Samples above the bound that the messages of ended sub-jobs (run, their acknowledgement
    # still to come) explain: without those, the broker held no more than the bound.
    over = [(messages, ended) for messages, _, ended in sampler.values() if messages > bound]
    over_explained = sum(messages - ended <= bound for messages, ended in over)
    observed = sample_summary(held)
    met = max_within(observed, bound)
    return [
        Result(
            "D3",
            f"broker bounded: {pending:,} sub-jobs waiting in the database, "
            f"{PROCESSES} worker processes, {window} s",
            "messages",
            observed["max"],
            bound,
            "the in-flight bound: worker processes + prefetch (goal: ours ≤ it)",
            higher_is_better=False,
            details={
                "pending_subjobs": pending,
                "waiting_rows_before": waiting_rows,
                "seed_seconds": round(seed_seconds, 1),
                "worker_processes": PROCESSES,
                "in_flight_bound": bound,
                "sampled_every_seconds": SAMPLE_EVERY,
                "seconds": round(elapsed, 1),
                "first_pass_seconds": round(first_pass, 3),
                "first_pass_published": first_published,
                "samples_over_bound": len(over),
                "samples_over_bound_by_ended_unacknowledged": over_explained,
                "subjobs_ended": ended,
                "subjobs_ended_per_second": round(ended / elapsed, 1),
                "broker_messages": observed,
                "broker_queue_only": sample_summary(queued),
                "goal_met": met,
            },
            note=(
                f"at most {observed['max']} staging messages in the broker (queue + "
                f"unacknowledged; queue alone at most {max(queued, default=0)}) in "
                f"{observed['samples']} samples against a bound of {bound} "
                f"({'met' if met else 'NOT met'}; {len(over)} samples above, {over_explained} of "
                "them by messages of sub-jobs already ended, not yet acknowledged)"
                f"; {ended} sub-jobs ended in {elapsed:.0f}s; a pass over them all "
                f"{first_pass * 1000:.0f} ms; "
                f"{pending:,} written in {seed_seconds:.0f}s through the submission service"
            ),
        )
    ]
