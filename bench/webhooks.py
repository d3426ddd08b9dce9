"""W1 webhooks: from a job's completion (its finished_at, by the database's clock on this
machine) to the receipt of its signed job.finished by a local receiver, p50/p99 over N 1-file
jobs staged by 2 worker processes; the goal is p99 ≤ 1 s. Jobs are submitted a few at a time,
so the figure is the path's latency, not a queue's length."""

import json
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.conf import settings

from bench.context import BenchContext, jobs_wait
from bench.harness import Result
from bench.workload import bench_owner, store_with_catalogue, tiny_files_write
from staging.models import Job, WebhookEndpoint
from staging.services.jobs import job_create_staging
from staging.services.webhooks import endpoint_create

GOAL_P99_MS = 1000
BATCH = 4  # jobs submitted together; the next batch once these ended


class _Receipts:
    """A receiver on a loopback port that notes when each job's job.finished arrived."""

    def __init__(self):
        self.at: dict[str, float] = {}
        receipts = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                arrived = time.time()
                event = json.loads(body)
                if event["type"] == "job.finished":
                    receipts.at.setdefault(event["data"]["jobId"], arrived)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(ctx: BenchContext) -> list[Result]:
    count = ctx.sizes.webhook_jobs
    ctx.work_reset()
    root = ctx.temp_dir / "webhooks"
    tiny_files_write(root / "archive", count)
    store, files = store_with_catalogue("bench-webhooks", root / "archive", root / "staging")
    receipts = _Receipts()
    owner = bench_owner()
    # The receiver is on loopback, which the bench settings allow (WEBHOOK_ALLOWED_NETWORKS).
    endpoint_create(
        owner=owner, url=receipts.url, event_types=["job.finished"], description="W1", api_base="/"
    )
    job_ids = []
    try:
        ctx.workers(2)
        for start in range(0, count, BATCH):
            batch = [
                job_create_staging(owner=owner, store=store, files=[f], source="bench").pk
                for f in files[start : start + BATCH]
            ]
            jobs_wait(batch, timeout=120)
            job_ids += batch
        deadline = time.monotonic() + 60
        while len(receipts.at) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        finished = dict(Job.objects.filter(pk__in=job_ids).values_list("uuid", "finished_at"))
        lags_ms = [
            (receipts.at[str(uuid)] - at.timestamp()) * 1000
            for uuid, at in finished.items()
            if str(uuid) in receipts.at
        ]
    finally:
        # Every other benchmark runs without a listener: none may pay for this one's.
        WebhookEndpoint.objects.filter(owner=owner).delete()
        receipts.stop()
        ctx.work_reset()
    if len(lags_ms) < count:
        raise RuntimeError(f"W1: {count - len(lags_ms)} of {count} job.finished never arrived")
    p50, p99 = statistics.median(lags_ms), _percentile(lags_ms, 0.99)
    goal = "met" if p99 <= GOAL_P99_MS else "NOT met"
    return [
        Result(
            "W1",
            "webhooks: job completion to a local receiver's receipt of job.finished, p99",
            "ms",
            p99,
            GOAL_P99_MS,
            f"the goal (p99 ≤ {GOAL_P99_MS} ms)",
            higher_is_better=False,
            details={
                "jobs": count,
                "p50_ms": round(p50, 1),
                "p99_ms": round(p99, 1),
                "max_ms": round(max(lags_ms), 1),
                "worker_processes": 2,
                "allowed_networks": settings.WEBHOOK_ALLOWED_NETWORKS,
            },
            note=f"p50 {p50:.0f} ms, max {max(lags_ms):.0f} ms over {count} jobs; goal {goal}",
        )
    ]
