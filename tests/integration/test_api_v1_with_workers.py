"""API v1 end to end over real HTTP, with real `celery worker` processes on Redis and the test
database: submit, poll as seed 001 describes (peek with ETags, then task_status for results),
cancel, retry, sub-jobs and release."""

import csv
import io
import os
import time
from pathlib import Path

import pytest
import requests

from staging.models import TERMINAL_STATUSES, Job, JobStatus, Pin, Store
from staging.roles import Role
from staging.services.accounts import token_create

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TERMINAL = {str(s) for s in TERMINAL_STATUSES}


class Client:
    """A bearer-token client of the live server, polling the way a well-behaved client does."""

    def __init__(self, base: str, token: str):
        self.base = base
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(self._url(path), timeout=10, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.session.post(self._url(path), timeout=10, **kwargs)

    def _url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base}{path}"

    def peek_until(self, status_uri: str, done, *, timeout: float = 90) -> dict:
        """Poll peek (sending back the ETag) until ``done(body)``; returns the last body."""
        deadline = time.monotonic() + timeout
        etag, body = None, None
        while time.monotonic() < deadline:
            headers = {"If-None-Match": etag} if etag else {}
            response = self.get(f"{status_uri}/peek", headers=headers)
            if response.status_code != 304:
                assert response.status_code == 200, response.text
                etag, body = response.headers["ETag"], response.json()
                if done(body):
                    return body
            time.sleep(0.1)
        raise TimeoutError(f"{status_uri}: still {body} after {timeout}s")


@pytest.fixture
def api(live_server):
    return Client(live_server.url, token_create(username="alice", role=Role.DATA_USER))


def test_a_job_submitted_by_paths_is_staged_and_its_results_read_as_json_and_csv(
    api, store, start_worker
):
    contents = {"run1/reads.fastq": os.urandom(3 * 1024 * 1024 + 5), "run1/notes.txt": b"hi\n"}
    for relative, data in contents.items():
        (Path(store.archive_root) / relative).parent.mkdir(parents=True, exist_ok=True)
        (Path(store.archive_root) / relative).write_bytes(data)
    start_worker(concurrency=2)

    created = api.post("/api/v1/jobs/", json={"paths": list(contents), "lifetime": "P7D"})

    assert created.status_code == 202, created.text
    status_uri = created.headers["Location"]
    assert status_uri == created.json()["statusuri"]
    final = api.peek_until(status_uri, lambda body: body["status"] in TERMINAL)
    assert final == {
        "status": "FINISHED",
        "progress": {
            "files_total": 2,
            "files_done": 2,
            "files_failed": 0,
            "bytes_total": sum(len(d) for d in contents.values()),
            "bytes_done": sum(len(d) for d in contents.values()),
        },
    }
    for relative, data in contents.items():
        assert (Path(store.staging_root) / relative).read_bytes() == data

    results = api.get(status_uri)
    assert results.status_code == 200
    assert results.headers["Location"] == created.json()["resultsuri"]
    assert sorted((f["path"], f["status"]) for f in results.json()["files"]) == [
        ("run1/notes.txt", "FINISHED"),
        ("run1/reads.fastq", "FINISHED"),
    ]
    as_csv = api.get(status_uri, headers={"Accept": "text/csv"})
    assert as_csv.headers["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert sorted((r["path"], r["size"]) for r in rows) == sorted(
        (path, str(len(data))) for path, data in contents.items()
    )
    unchanged = api.get(
        status_uri, headers={"Accept": "text/csv", "If-None-Match": as_csv.headers["ETag"]}
    )
    assert (unchanged.status_code, unchanged.content) == (304, b"")

    released = api.post(f"/api/v1/jobs/{created.json()['jobId']}/release")
    assert released.json()["released"] == 2
    assert not Pin.objects.filter(job__uuid=created.json()["jobId"], released_at=None).exists()


def test_a_running_job_is_cancelled_over_the_api_leaving_no_partial_file(
    api, store, archive_files, start_worker, settings
):
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 100}
    # 100 files at 0.3 s each: the cancel, sent once the first file is done, comes long before
    # the last one however slow the machine is.
    Store.objects.filter(pk=store.pk).update(simulated_latency_ms=300)
    files = archive_files({f"slow/f{n:03}.bin": os.urandom(1024) for n in range(100)})
    start_worker(concurrency=1)

    created = api.post("/api/v1/jobs/", json={"ids": [f.id for f in files]})
    status_uri = created.headers["Location"]
    api.peek_until(status_uri, lambda body: body["progress"]["files_done"] >= 1)

    cancelled = api.post(f"/api/v1/jobs/{created.json()['jobId']}/cancel")

    assert cancelled.status_code in (200, 202), cancelled.text
    assert cancelled.json()["status"] in ("CANCELLING", "CANCELLED")
    final = api.peek_until(status_uri, lambda body: body["status"] in TERMINAL)
    assert final["status"] == "CANCELLED"
    assert 1 <= final["progress"]["files_done"] < 100
    items = api.get(f"/api/v1/jobs/{created.json()['jobId']}/items/?status=CANCELLED").json()
    assert items["results"]
    leftovers = [p for p in Path(store.staging_root).rglob("*") if p.name.endswith(".part")]
    assert leftovers == []
    again = api.post(f"/api/v1/jobs/{created.json()['jobId']}/cancel")
    assert (again.status_code, again.json()["status"]) == (200, "CANCELLED")


def test_a_failed_file_is_retried_over_the_api_once_it_is_back(
    api, store, archive_files, start_worker
):
    keep, flaky = archive_files({"keep.txt": b"keep", "flaky.txt": b"flaky"})
    source = Path(store.archive_root) / "flaky.txt"
    created = api.post("/api/v1/jobs/", json={"ids": [keep.id, flaky.id]})
    source.unlink()  # gone before any worker looks at it
    start_worker(concurrency=1)
    status_uri = created.headers["Location"]
    job_id = created.json()["jobId"]

    first = api.peek_until(status_uri, lambda body: body["status"] in TERMINAL)
    assert first["status"] == "PARTIALLY_FAILED"
    failed = api.get(f"/api/v1/jobs/{job_id}/items/?status=FAILED").json()["results"]
    assert [(i["path"], "not found" in i["error"]) for i in failed] == [("flaky.txt", True)]

    source.write_bytes(b"flaky")
    retried = api.post(f"/api/v1/jobs/{job_id}/retry")

    assert retried.status_code == 202, retried.text
    assert api.peek_until(status_uri, lambda b: b["status"] in TERMINAL)["status"] == "FINISHED"
    assert (Path(store.staging_root) / "flaky.txt").read_bytes() == b"flaky"
    subjobs = api.get(f"/api/v1/jobs/{job_id}/subjobs/").json()["results"]
    assert [(s["subjobId"], s["status"]) for s in subjobs] == [
        (1, "PARTIALLY_FAILED"),
        (2, "FINISHED"),
    ]


def test_a_job_spread_over_subjobs_answers_each_one_on_both_paths(
    api, store, archive_files, start_worker, settings
):
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 2}
    files = archive_files({f"many/f{n}.txt": f"file {n}".encode() for n in range(5)})
    start_worker(concurrency=2)

    created = api.post("/api/v1/jobs/", json={"ids": [f.id for f in files]})
    job_id = created.json()["jobId"]
    api.peek_until(created.headers["Location"], lambda body: body["status"] in TERMINAL)

    subjobs = api.get(f"/api/v1/jobs/{job_id}/subjobs/").json()["results"]
    assert [(s["subjobId"], s["files_total"], s["status"]) for s in subjobs] == [
        (1, 2, "FINISHED"),
        (2, 2, "FINISHED"),
        (3, 1, "FINISHED"),
    ]
    for sequence in (1, 2, 3):
        base = f"/dmi/v1/dataJob/{job_id}/dataProducerJob/{sequence}"
        status = api.get(f"{base}/status", params={"dataProducerId": "primary"})
        assert status.json() == {"status": "FINISHED"}
        result = api.get(f"{base}/result", params={"dataProducerId": "primary", "destination": "t"})
        files_of_subjob = api.get(result.json()["resulturi"]).json()["results"]
        assert len(files_of_subjob) == subjobs[sequence - 1]["files_total"]
        assert {f["status"] for f in files_of_subjob} == {"FINISHED"}
    assert Job.objects.get(uuid=job_id).status == JobStatus.FINISHED
