"""W2 and W3: telling clients instead of being asked.

W2, completion to the client: jobs staged by a real worker (2 processes, small database), each
watched by an event stream (GET /api/v1/jobs/{id}/events) and a DTS long poll
(GET /dts/staging?id= with If-None-Match and Prefer: wait=60) opened before the job may run.
The figure is the time from the job's ``finished_at`` (written by the worker as it settles the
job) to the moment the client has the terminal event, or the long poll's "ready" answer; p99
over every job, goal at most 200 ms. The jobs are held back (their store's ``max_active`` is 0)
until every watcher is waiting, then released together, a batch at a time.

W3, open streams beside the poll load: P1's peek load (wrk, 64 connections, the large
database's gunicorn with production settings) without, then with, 200 event streams open on
that same server (on jobs that do not end, so they stay open). The figure is the ratio of the
two throughputs (rounds alone, with, with, alone, pooled); goal: a drop of at most 10 %."""

import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import psycopg
import requests
from django.conf import settings

from bench.context import BenchContext, jobs_wait
from bench.harness import LARGE_DB, Result
from bench.loadgen import run_wrk
from bench.seed import SEED_SOURCE
from bench.status_poll import ENDPOINTS, poll_target, pooled_report
from bench.workload import bench_owner, store_with_catalogue, tiny_files_write
from staging.models import Job, Store
from staging.services.dispatch import subjobs_dispatch
from staging.services.jobs import job_create_staging

GOAL_P99_MS = 200
GOAL_THROUGHPUT_RATIO = 0.9
STREAMS = 200
BATCH = 20
PEEK = next(e for e in ENDPOINTS if e.key == "peek")


# --- W2 -------------------------------------------------------------------------------------


def completion_latency(ctx: BenchContext) -> list[Result]:
    jobs_wanted = 100 if ctx.sizes.label == "quick" else 200
    ctx.work_reset()
    ctx.workers(2)
    base_url = ctx.web("small")
    token = ctx.database("small")["token"]
    root = ctx.temp_dir / "live"
    tiny_files_write(root / "archive", 1)
    store, files = store_with_catalogue("bench-live", root / "archive", root / "staged")
    stream_ms: list[float] = []
    poll_ms: list[float] = []
    for _ in range(0, jobs_wanted, BATCH):
        Store.objects.filter(pk=store.pk).update(max_active=0)  # held until all watch
        jobs = [
            job_create_staging(owner=bench_owner(), store=store, files=files, source="bench")
            for _ in range(BATCH)
        ]
        streams, polls = _watch_to_the_end(base_url, token, jobs, lambda: _release(store))
        jobs_wait([job.pk for job in jobs], timeout=120)
        ended = Job.objects.filter(pk__in=[job.pk for job in jobs])
        finished = dict(ended.values_list("pk", "finished_at"))
        for job in jobs:
            end = finished[job.pk].timestamp()
            stream_ms.append((streams[job.pk] - end) * 1000)
            poll_ms.append((polls[job.pk] - end) * 1000)
    ctx.work_reset()
    return [
        _latency_result("completion → SSE terminal event", stream_ms),
        _latency_result("completion → DTS long poll answer (Prefer: wait=60)", poll_ms),
    ]


def _release(store: Store) -> None:
    Store.objects.filter(pk=store.pk).update(max_active=None)
    subjobs_dispatch()


def _watch_to_the_end(base_url: str, token: str, jobs: list[Job], release) -> tuple[dict, dict]:
    """Opens a stream and a long poll per job, calls ``release`` once all of them wait, and
    returns when each saw the end: ({job pk: when its stream had the terminal event}, {job
    pk: when its long poll answered})."""
    auth = {"Authorization": f"Bearer {token}"}
    ready = threading.Barrier(2 * len(jobs) + 1, timeout=60)
    streams: dict[int, float] = {}
    polls: dict[int, float] = {}

    def stream(job: Job) -> None:
        url = f"{base_url}/api/v1/jobs/{job.uuid}/events"
        with requests.get(url, headers=auth, stream=True, timeout=(5, 120)) as response:
            lines = response.iter_lines(decode_unicode=True)
            next(lines)  # "retry: …": the stream is open and watching
            ready.wait()
            for line in lines:
                if line.startswith("data:") and '"status": "FINISHED"' in line:
                    streams[job.pk] = time.time()
                    return
        raise RuntimeError(f"the stream of job {job.uuid} ended without FINISHED")

    def long_poll(job: Job) -> None:
        url = f"{base_url}/dts/staging?id={job.uuid}"
        with requests.Session() as session:
            etag = session.get(url, headers=auth, timeout=10).headers["ETag"]
            waiting = {**auth, "If-None-Match": etag, "Prefer": "wait=60"}
            ready.wait()
            # The request goes out after the barrier; the release waits a moment for it.
            answer = session.get(url, headers=waiting, timeout=120)
        if answer.status_code != 200 or answer.json()["status"] != "ready":
            raise RuntimeError(f"long poll of {job.uuid}: {answer.status_code} {answer.text}")
        polls[job.pk] = time.time()

    with ThreadPoolExecutor(max_workers=2 * len(jobs)) as executor:
        futures = [executor.submit(stream, job) for job in jobs]
        futures += [executor.submit(long_poll, job) for job in jobs]
        ready.wait()
        time.sleep(0.5)  # the long polls' requests are sent and waiting
        release()
        for future in futures:
            future.result(timeout=180)
    return streams, polls


def _latency_result(name: str, samples_ms: list[float]) -> Result:
    ordered = sorted(samples_ms)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    p50 = statistics.median(ordered)
    return Result(
        "W2",
        name,
        "p99 ms",
        round(p99, 1),
        GOAL_P99_MS,
        "goal",
        higher_is_better=False,
        details={"jobs": len(ordered), "p50_ms": round(p50, 1), "max_ms": round(ordered[-1], 1)},
        note=f"p50 {p50:.0f} ms, max {ordered[-1]:.0f} ms over {len(ordered)} jobs",
    )


# --- W3 -------------------------------------------------------------------------------------


def open_streams_beside_polls(ctx: BenchContext) -> list[Result]:
    sizes = ctx.sizes
    info, base_url, ids_file = poll_target(ctx)
    token = info["token"]

    def peek_load():
        return run_wrk(
            base_url=base_url,
            path_template=PEEK.path,
            ids_file=ids_file,
            token=token,
            connections=sizes.poll_connections,
            seconds=sizes.poll_seconds,
        )

    run_wrk(
        base_url=base_url,
        path_template=PEEK.path,
        ids_file=ids_file,
        token=token,
        connections=sizes.poll_connections,
        seconds=sizes.poll_warmup_seconds,
    )
    # Alone, with, with, alone: drift of the machine (other work, caches) favours neither side.
    # The streams stay open for both middle rounds: a server notices a client that hung up only
    # when it next writes to it (the keepalive), so streams closed and opened again between
    # rounds would find the old ones' slots still taken for a while.
    reports: dict[bool, list] = {False: [peek_load()], True: []}
    streams = _open_streams(base_url, token, _unending_jobs(STREAMS))
    try:
        asked = len(streams)
        opened = sum(1 for _, status in streams if status == 200)
        reports[True] += [peek_load(), peek_load()]
    finally:
        for sock, _ in streams:
            sock.close()
    reports[False].append(peek_load())
    alone, beside = pooled_report(reports[False]), pooled_report(reports[True])
    ratio = beside.requests_per_second / alone.requests_per_second
    result = Result(
        "W3",
        f"P1 peek throughput with {STREAMS} event streams open",
        "requests/s",
        round(beside.requests_per_second, 1),
        round(alone.requests_per_second, 1),
        "the same load without streams",
        profile_below=GOAL_THROUGHPUT_RATIO,
        details={
            "streams_asked": asked,
            "streams_open": opened,
            "alone": alone.as_dict(),
            "beside": beside.as_dict(),
            "rounds_requests_per_second": {
                "alone": [round(r.requests_per_second, 1) for r in reports[False]],
                "beside": [round(r.requests_per_second, 1) for r in reports[True]],
            },
        },
        note=(
            f"{opened} of {asked} streams open; ratio {ratio:.3f} (goal ≥ "
            f"{GOAL_THROUGHPUT_RATIO}); p99 {beside.p99_ms:.1f} ms vs {alone.p99_ms:.1f} ms"
        ),
    )
    return [result]


def _unending_jobs(count: int) -> list[str]:
    """Public ids of seeded jobs of the large database that stay RUNNING or NOT_STARTED (no
    worker runs there), so their streams stay open."""
    with psycopg.connect(f"{settings.BENCH_POSTGRES_URL}/{LARGE_DB}") as conn:
        rows = conn.execute(
            f"SELECT uuid FROM {Job._meta.db_table} WHERE source = %s "
            "AND status IN ('RUNNING', 'NOT_STARTED') ORDER BY id DESC LIMIT %s",
            [SEED_SOURCE, count],
        ).fetchall()
    if len(rows) < count:
        raise RuntimeError(f"only {len(rows)} unending seeded jobs; seed more (--rows)")
    return [str(job_uuid) for (job_uuid,) in rows]


def _open_streams(base_url: str, token: str, job_ids: list[str]) -> list[tuple[socket.socket, int]]:
    """An event stream per job on a plain socket, read up to its status line and then left
    open unread (keepalive comments are a few bytes every 15 s): (socket, status code)."""
    address = urlsplit(base_url)
    opened = []
    for job_id in job_ids:
        sock = socket.create_connection((address.hostname, address.port), timeout=10)
        sock.sendall(
            f"GET /api/v1/jobs/{job_id}/events HTTP/1.1\r\nHost: {address.netloc}\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
        opened.append((sock, int(status_line.split()[1])))
    return opened
