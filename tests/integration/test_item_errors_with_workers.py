"""Files that fail in a real `celery worker` are reported by their store paths, and the failed
job says why: over real HTTP, in peek, the items list, the CSV results and the DTS status."""

import csv
import io
import os
from pathlib import Path

import pytest

from staging.roles import Role
from staging.services.accounts import token_create
from tests.integration.test_api_v1_with_workers import TERMINAL, Client

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_worker_names_failed_files_by_store_path_and_the_job_says_why(
    live_server, store, start_worker
):
    api = Client(live_server.url, token_create(username="alice", role=Role.DATA_USER))
    archive = Path(store.archive_root)
    names = ["run2/b.txt", "run2/f.txt", "run2/ok.txt"]
    for name in names:
        (archive / name).parent.mkdir(parents=True, exist_ok=True)
        (archive / name).write_bytes(b"data")
    created = api.post("/api/v1/jobs/", json={"paths": names})
    assert created.status_code == 202, created.text
    # Broken after the job was accepted, before any worker runs it.
    (archive / "run2/b.txt").unlink()
    (archive / "run2/f.txt").unlink()
    os.mkfifo(archive / "run2/f.txt")
    start_worker(concurrency=1)

    status_uri = created.headers["Location"]
    final = api.peek_until(status_uri, lambda body: body["status"] in TERMINAL)

    why = (
        "2 files failed: is a FIFO, not a regular file (1: run2/f.txt); "
        "source file not found (1: run2/b.txt)"
    )
    assert (final["status"], final["error"]) == ("PARTIALLY_FAILED", why)
    job_id = created.json()["jobId"]
    items = api.get(f"/api/v1/jobs/{job_id}/items/", params={"status": "FAILED"}).json()
    assert {item["path"]: item["error"] for item in items["results"]} == {
        "run2/b.txt": "source file not found: run2/b.txt",
        "run2/f.txt": "run2/f.txt is a FIFO, not a regular file",
    }
    results = api.get(status_uri, headers={"Accept": "text/csv"}).text
    assert store.archive_root not in results and store.staging_root not in results
    rows = {row["path"]: row["error"] for row in csv.DictReader(io.StringIO(results))}
    assert rows["run2/b.txt"] == "source file not found: run2/b.txt"
    dts = api.get("/dts/staging", params={"id": job_id})
    assert dts.json() == {"status": "failed", "error": why}
