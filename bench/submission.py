"""P4 submission: time to accept a 10,000-file DTS staging request over HTTP, and the queries
it takes, beside a bench-only view that does the least such a request needs (one lookup of
the ids, the job row and one item row per file, in one transaction)."""

import json
import statistics
import time
from pathlib import Path

import requests
from django.utils import timezone

from bench.context import BenchContext, request_queries
from bench.harness import Result
from staging.models import File, Job, Store


def catalogue_seed(store: Store, count: int) -> list[str]:
    """``count`` catalogue entries of ``store`` (rows only: nothing is staged in P4)."""
    now = timezone.now()
    files = [
        File(
            id=File.id_for(store.slug, f"d{i // 1000:03d}/f{i:05d}.dat"),
            store=store,
            path=f"d{i // 1000:03d}/f{i:05d}.dat",
            size=1024,
            mtime=now,
            media_type="application/octet-stream",
            last_seen_at=now,
        )
        for i in range(count)
    ]
    File.objects.bulk_create(files, batch_size=2000)
    return [f.id for f in files]


def bench_store(ctx: BenchContext, slug: str) -> Store:
    """A store of this run on empty directories under its temporary folder."""
    root = ctx.temp_dir / slug
    for part in ("archive", "staging"):
        Path(root, part).mkdir(parents=True, exist_ok=True)
    return Store.objects.create(
        slug=slug, archive_root=str(root / "archive"), staging_root=str(root / "staging")
    )


def post_seconds(url: str, body: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    response = requests.post(
        url, data=body, headers={"Content-Type": "application/json", **headers}, timeout=300
    )
    elapsed = time.perf_counter() - started
    if response.status_code not in (201, 202):
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")
    return elapsed


def run(ctx: BenchContext) -> list[Result]:
    sizes = ctx.sizes
    info = ctx.database("small")
    base_url = ctx.web("small")
    ctx.work_reset()
    store = bench_store(ctx, "bench-submit")
    ids = catalogue_seed(store, sizes.submit_files)
    body = json.dumps({"ids": ids})
    ours_url = f"{base_url}/dts/staging"
    baseline_url = f"{base_url}/bench/baseline/submit?owner={info['user_id']}"
    auth = {"Authorization": f"Bearer {info['token']}"}
    try:
        ours, baseline = [], []
        for _ in range(sizes.submit_repeats):
            baseline.append(post_seconds(baseline_url, body, {}))
            ours.append(post_seconds(ours_url, body, auth))
            ctx.broker_flush()  # no worker runs now: the published sub-jobs would pile up
        subjobs = Job.objects.filter(source="dts").first().subjobs.count()
        ours_queries = request_queries(
            "POST", "/dts/staging", body, HTTP_AUTHORIZATION=auth["Authorization"]
        )
        baseline_queries = request_queries(
            "POST", f"/bench/baseline/submit?owner={info['user_id']}", body
        )
    finally:
        ctx.broker_flush()
        ctx.work_reset()
    ours_s, baseline_s = statistics.median(ours), statistics.median(baseline)
    return [
        Result(
            "P4",
            f"submission: accept a {sizes.submit_files:,}-file request",
            "s",
            ours_s,
            baseline_s,
            "bare view: 1 lookup + job + item rows in one transaction",
            higher_is_better=False,
            details={
                "files": sizes.submit_files,
                "repeats": sizes.submit_repeats,
                "ours_seconds": [round(t, 3) for t in ours],
                "baseline_seconds": [round(t, 3) for t in baseline],
                "queries_ours": ours_queries,
                "queries_baseline": baseline_queries,
                "subjobs_published": subjobs,
            },
            note=(
                f"{ours_queries} queries vs {baseline_queries}; "
                f"{subjobs} sub-jobs published per request"
            ),
        )
    ]
