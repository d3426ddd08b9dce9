"""P7 million-file requests: one staging request for ``million_files`` catalogue files, sent to
POST /api/v1/jobs/ as a streamed NDJSON body and as a JSON array, and to the tape API's stage
as an NDJSON body of paths, each timed until its answer, with the peak resident memory of the
gunicorn worker that served it (VmHWM). Beside it, the floor of any such request: PostgreSQL
COPY of the same rows (id, path, size) into a bare table, in this process. Then the job's
items listed by state (cursor pages) and its status peek.

The web server is its own (one worker process, so its VmHWM is this request's), with
MAX_REQUEST_BODY_BYTES raised for the JSON array: that body is parsed whole, an NDJSON body is
read as it comes and needs no such setting. No worker runs: nothing is staged."""

import json
import time
from pathlib import Path

import requests
from django.db import connection
from django.utils import timezone

from bench.context import DATABASES, BenchContext
from bench.harness import Result
from bench.submission import bench_store
from staging.models import File, Store

WEB = "web-million"
ARRAY_BODY_LIMIT = str(256 * 1024**2)


def catalogue_copy(store: Store, count: int) -> list[str]:
    """``count`` catalogue rows of ``store`` written by COPY (a million model instances would
    take longer than the request measured); returns their ids."""
    now = timezone.now()
    ids = []
    with connection.cursor() as cursor:
        columns = "id, store_id, path, size, mtime, media_type, md5, sha256, adler32, present, "
        columns += "last_seen_at, metadata, tape_vid"
        with cursor.copy(f"COPY {File._meta.db_table} ({columns}) FROM STDIN") as copy:
            for i in range(count):
                path = f"d{i // 1000:04d}/f{i:07d}.dat"
                file_id = File.id_for(store.slug, path)
                ids.append(file_id)
                copy.write_row(
                    (file_id, store.pk, path, 1024, now, "", "", "", "", True, now, "{}", "")
                )
    return ids


def baseline_copy_seconds(store: Store, ids: list[str]) -> float:
    """COPY of the request's rows (id, path, size) into a bare unindexed table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE bench_million_rows (id text, path text, size bigint)"
        )
        started = time.perf_counter()
        with cursor.copy("COPY bench_million_rows (id, path, size) FROM STDIN") as copy:
            for i, file_id in enumerate(ids):
                copy.write_row((file_id, f"d{i // 1000:04d}/f{i:07d}.dat", 1024))
        elapsed = time.perf_counter() - started
        cursor.execute("DROP TABLE bench_million_rows")
    return elapsed


def worker_pid(master_pid: int) -> int:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    if len(children) != 1:
        raise RuntimeError(f"expected one gunicorn worker, found {children}")
    return int(children[0])


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def post(
    url: str, body_path: Path, content_type: str, token: str, *, status: int = 202
) -> tuple[float, dict]:
    """POST the file's bytes (requests sends a file with its Content-Length, read as it goes);
    returns the seconds until the answer and its body."""
    started = time.perf_counter()
    with open(body_path, "rb") as body:
        response = requests.post(
            url,
            data=body,
            headers={"Content-Type": content_type, "Authorization": f"Bearer {token}"},
            timeout=600,
        )
    elapsed = time.perf_counter() - started
    if response.status_code != status:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")
    return elapsed, response.json()


def timed_get(url: str, token: str) -> tuple[float, dict]:
    started = time.perf_counter()
    response = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=120)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")
    return elapsed, response.json()


def jobs_delete(store: Store) -> None:
    """The store's jobs and rows, by plain DELETEs (the ORM would load a million rows), then
    their tables vacuumed."""
    with connection.cursor() as cursor:
        for table in ("staging_item", "staging_pin", "staging_subjob"):
            cursor.execute(
                f"DELETE FROM {table} WHERE job_id IN "
                "(SELECT id FROM staging_job WHERE store_id = %s)",
                [store.pk],
            )
        cursor.execute("DELETE FROM staging_job WHERE store_id = %s", [store.pk])
        if not connection.in_atomic_block:
            # The next request of the run should not pay for the million dead rows (and index
            # entries) of the last one, nor wait for autovacuum to get to them.
            for table in ("staging_item", "staging_pin", "staging_subjob"):
                cursor.execute(f"VACUUM {table}")


def run(ctx: BenchContext) -> list[Result]:
    count = ctx.sizes.million_files
    info = ctx.database("small")
    ctx.work_reset()
    store = bench_store(ctx, "bench-million")
    token = info["token"]
    results = []
    try:
        ids = catalogue_copy(store, count)
        baseline = baseline_copy_seconds(store, ids)
        ndjson_path = ctx.temp_dir / "million.ndjson"
        ndjson_path.write_text("".join(json.dumps(i) + "\n" for i in ids))
        tape_path = ctx.temp_dir / "million-tape.ndjson"
        tape_path.write_text(
            "".join(
                json.dumps({"path": f"/{store.slug}/d{i // 1000:04d}/f{i:07d}.dat"}) + "\n"
                for i in range(count)
            )
        )
        array_path = ctx.temp_dir / "million.json"
        array_path.write_text(json.dumps(ids))
        del ids
        base = ctx.supervisor.start_web(
            WEB, DATABASES["small"], WEB_CONCURRENCY="1", MAX_REQUEST_BODY_BYTES=ARRAY_BODY_LIMIT
        )
        pid = worker_pid(ctx.supervisor.pid(WEB))
        timed_get(f"{base}/api/v1/jobs/?page_size=1", token)  # warm: imports, connection
        idle_mib = peak_rss_mib(pid)
        url = f"{base}/api/v1/jobs/?store={store.slug}"
        ndjson_s, answer = post(url, ndjson_path, "application/x-ndjson", token)
        job_id = answer["jobId"]
        ndjson_mib = peak_rss_mib(pid)
        pages = []
        page_url = f"{base}/api/v1/jobs/{job_id}/items/?status=NOT_STARTED&page_size=1000"
        for _ in range(3):
            seconds, page = timed_get(page_url, token)
            pages.append(round(seconds * 1000, 1))
            page_url = page["next"]
        peek_s, _ = timed_get(f"{base}/api/v1/task_status/{job_id}/peek", token)
        ctx.broker_flush()
        jobs_delete(store)
        array_s, _ = post(url, array_path, "application/json", token)
        array_mib = peak_rss_mib(pid)
        ctx.broker_flush()
        jobs_delete(store)
        tape_s, _ = post(
            f"{base}/tape/api/v1/stage", tape_path, "application/x-ndjson", token, status=201
        )
        tape_mib = peak_rss_mib(pid)
        details = {
            "files": count,
            "ndjson_seconds": round(ndjson_s, 2),
            "array_seconds": round(array_s, 2),
            "tape_seconds": round(tape_s, 2),
            "baseline_copy_seconds": round(baseline, 2),
            "worker_peak_rss_mib": {
                "idle": round(idle_mib),
                "after_ndjson": round(ndjson_mib),
                "after_array": round(array_mib),
                "after_tape": round(tape_mib),
            },
            "items_pages_ms": pages,
            "peek_ms": round(peek_s * 1000, 1),
        }
        what = f"COPY of the same {count:,} rows into a bare table"
        results.append(
            Result(
                "P7",
                f"accept a {count:,}-file request, NDJSON streamed",
                "s",
                ndjson_s,
                baseline,
                what,
                higher_is_better=False,
                details=details,
                note=(
                    f"web worker peak RSS {ndjson_mib:.0f} MiB (idle {idle_mib:.0f}); items by "
                    f"status, pages of 1,000: {', '.join(f'{p} ms' for p in pages)}; peek "
                    f"{peek_s * 1000:.1f} ms"
                ),
            )
        )
        results.append(
            Result(
                "P7",
                f"accept a {count:,}-file request, JSON array",
                "s",
                array_s,
                baseline,
                what,
                higher_is_better=False,
                details=details,
                note=f"web worker peak RSS {array_mib:.0f} MiB (MAX_REQUEST_BODY_BYTES raised)",
            )
        )
        results.append(
            Result(
                "P7",
                f"tape API stage of {count:,} files, NDJSON streamed",
                "s",
                tape_s,
                baseline,
                what,
                higher_is_better=False,
                details=details,
                note=f"web worker peak RSS {tape_mib:.0f} MiB",
            )
        )
    finally:
        ctx.supervisor.stop(WEB)
        ctx.broker_flush()
        jobs_delete(store)
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM staging_file WHERE store_id = %s", [store.pk])
        store.delete()
    return results
