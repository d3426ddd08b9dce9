"""Deadlines and per-file times end to end: real HTTP, real `celery worker` and `celery beat`
processes on Redis and the test database. A job's files not on disk by its deadline end FAILED
with "deadline exceeded" whether they waited in the database or were being staged; what was
staged stays staged; the items API and the CSV results show when each file was queued,
started, finished, pinned until and released."""

import csv
import io
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from staging.models import Item, Job, JobStatus, Store
from staging.roles import Role
from staging.services.accounts import token_create
from staging.services.jobs import job_create_staging
from tests.factories import UserFactory
from tests.integration.dts_client import dts_headers, dts_stage, poll
from tests.integration.test_api_v1_with_workers import TERMINAL, Client
from tests.integration.test_dispatch_with_workers import one_file_subjobs, slow  # noqa: F401
from tests.workers import wait_for_job, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FAST_BEAT = {"DISPATCH_INTERVAL_SECONDS": "1", "RECONCILER_INTERVAL_SECONDS": "1"}
TIMES = ("queued_at", "started_at", "finished_at", "pinned_until", "released_at")


@pytest.fixture
def api(live_server):
    return Client(live_server.url, token_create(username="alice", role=Role.DATA_USER))


def write_archive(store: Store, contents: dict[str, bytes]) -> None:
    for relative, data in contents.items():
        path = Path(store.archive_root) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@pytest.mark.usefixtures("one_file_subjobs")
def test_a_job_waiting_behind_a_full_store_fails_at_its_deadline_with_the_reason(
    api, live_server, store, archive_files, start_worker, start_beat
):
    files = archive_files({f"busy/{n}.bin": b"b" * (100 + n) for n in range(12)})
    write_archive(store, {"late/a.txt": b"late\n", "late/b.txt": b"later\n"})
    slow(store, 400, max_active=1)  # one drive, held by the first job for about 5 s
    start_worker(concurrency=2, **FAST_BEAT)
    start_beat(**FAST_BEAT)
    holder = job_create_staging(owner=UserFactory(), store=store, files=files, source="api")
    wait_until(lambda: holder.subjobs.filter(status=JobStatus.RUNNING).exists(), what="a slot")

    created = api.post(
        "/api/v1/jobs/", json={"paths": ["late/a.txt", "late/b.txt"], "deadline": "PT1S"}
    )

    assert created.status_code == 202, created.text
    status_uri = created.headers["Location"]
    final = api.peek_until(status_uri, lambda body: body["status"] in TERMINAL, timeout=60)
    assert final["status"] == "FAILED"
    assert final["error"] == "2 files failed: deadline exceeded (2: late/a.txt, late/b.txt)"
    job = Job.objects.get(uuid=created.json()["jobId"])
    # It never left the database.
    assert set(job.subjobs.values_list("status", "dispatched_at")) == {(JobStatus.FAILED, None)}
    items = {
        row["path"]: row for row in api.get(f"/api/v1/jobs/{job.uuid}/items/").json()["results"]
    }
    assert {(row["status"], row["error"]) for row in items.values()} == {
        ("FAILED", "deadline exceeded")
    }
    assert all(row["started_at"] is None and row["pinned_until"] is None for row in items.values())
    assert not (Path(store.staging_root) / "late").exists()
    result = api.get(status_uri).json()  # task_status once it ended: the results
    assert result["status"] == "FAILED"
    assert {f["error"] for f in result["files"]} == {"deadline exceeded"}
    assert wait_for_job(holder).status == JobStatus.FINISHED  # the other job is untouched


@pytest.mark.usefixtures("one_file_subjobs")
def test_a_dts_request_gets_its_store_default_deadline_and_reports_the_failure(
    live_server, store, archive_files, start_worker, start_beat
):
    files = archive_files({f"busy/{n}.bin": b"b" * (100 + n) for n in range(12)})
    (wanted,) = archive_files({"dts/wanted.txt": b"wanted\n"})
    slow(store, 400, max_active=1, default_deadline=timedelta(seconds=1))
    start_worker(concurrency=2, **FAST_BEAT)
    start_beat(**FAST_BEAT)
    holder = job_create_staging(owner=UserFactory(), store=store, files=files, source="api")
    Job.objects.filter(pk=holder.pk).update(deadline_at=None)  # this one may take its time
    wait_until(lambda: holder.subjobs.filter(status=JobStatus.RUNNING).exists(), what="a slot")
    headers = dts_headers()

    request_id, status_url = dts_stage(live_server.url, [wanted.id], headers)

    job = Job.objects.get(uuid=request_id)
    assert job.deadline_at == job.created_at + timedelta(seconds=1)
    body = poll(status_url, headers, lambda b: b["status"] != "staging")
    assert body["status"] == "failed"
    assert "deadline exceeded" in body["error"]


def test_a_deadline_passing_mid_run_keeps_what_was_staged_and_fails_the_rest(
    api, store, start_worker, start_beat
):
    contents = {f"run/{n:02}.txt": f"file {n}\n".encode() for n in range(20)}
    write_archive(store, contents)
    slow(store, 250)  # one sub-job of 20 files: about 5 s
    start_worker(concurrency=1, **FAST_BEAT)
    start_beat(**FAST_BEAT)

    created = api.post("/api/v1/jobs/", json={"paths": list(contents), "deadline": 2})

    assert created.status_code == 202, created.text
    final = api.peek_until(created.headers["Location"], lambda b: b["status"] in TERMINAL)
    assert final["status"] == "PARTIALLY_FAILED"
    job = Job.objects.get(uuid=created.json()["jobId"])
    assert job.subjobs.count() == 1
    finished = list(job.items.filter(status=JobStatus.FINISHED))
    failed = list(job.items.filter(status=JobStatus.FAILED))
    assert finished and failed
    assert len(finished) + len(failed) == 20
    assert {item.error for item in failed} == {"deadline exceeded"}
    for item in finished:  # staged before the deadline, and still there
        assert item.started_at < job.deadline_at
        assert (Path(store.staging_root) / item.path).read_bytes() == contents[item.path]
    for item in failed:
        assert not (Path(store.staging_root) / item.path).exists()
        assert item.bytes_done == 0
    # At most the file in hand at the deadline had begun; the others never started.
    assert sum(item.started_at is not None for item in failed) <= 1
    assert final["progress"]["files_done"] == len(finished)
    assert final["error"].startswith(f"{len(failed)} files failed: deadline exceeded")


def test_a_job_that_finishes_before_its_deadline_is_untouched(api, store, start_worker, start_beat):
    write_archive(store, {"quick/a.txt": b"a\n", "quick/b.txt": b"b\n"})
    start_worker(concurrency=2, **FAST_BEAT)
    start_beat(**FAST_BEAT)

    created = api.post(
        "/api/v1/jobs/", json={"paths": ["quick/a.txt", "quick/b.txt"], "deadline": "PT1H"}
    )

    final = api.peek_until(created.headers["Location"], lambda b: b["status"] in TERMINAL)
    assert final["status"] == "FINISHED"
    job = Job.objects.get(uuid=created.json()["jobId"])
    assert job.deadline_at == job.created_at + timedelta(hours=1)
    assert set(job.items.values_list("status", "error")) == {(JobStatus.FINISHED, "")}
    detail = api.get(f"/api/v1/jobs/{job.uuid}/").json()
    assert moment(detail["deadline_at"]) == job.deadline_at


def test_the_items_api_and_the_csv_show_when_each_file_was_queued_staged_pinned_and_released(
    api, store, start_worker
):
    contents = {"times/a.txt": b"alpha\n", "times/b.txt": b"beta\n", "times/c.txt": b"gamma\n"}
    write_archive(store, contents)
    start_worker(concurrency=2)

    created = api.post("/api/v1/jobs/", json={"paths": list(contents), "lifetime": "P2D"})
    final = api.peek_until(created.headers["Location"], lambda b: b["status"] in TERMINAL)
    assert final["status"] == "FINISHED"
    job = Job.objects.get(uuid=created.json()["jobId"])
    items_uri = f"/api/v1/jobs/{job.uuid}/items/"

    staged = {row["path"]: row for row in api.get(items_uri).json()["results"]}
    for path, row in staged.items():
        queued, started, finished, pinned_until = (moment(row[name]) for name in TIMES[:4])
        assert job.created_at <= queued <= started <= finished <= job.finished_at, path
        assert pinned_until == job.finished_at + timedelta(days=2), path
        assert row["released_at"] is None

    released = api.post(f"/api/v1/jobs/{job.uuid}/release", json={"paths": ["times/b.txt"]})
    assert released.status_code == 200, released.text
    after = {row["path"]: row for row in api.get(items_uri).json()["results"]}
    release_time = moment(after["times/b.txt"]["released_at"])
    assert finished <= release_time
    assert after["times/a.txt"]["released_at"] is None

    response = api.get(f"/api/v1/jobs/{job.uuid}/result", headers={"Accept": "text/csv"})
    assert response.status_code == 200, response.text
    rows = {row["path"]: row for row in csv.DictReader(io.StringIO(response.text))}
    assert set(rows) == set(contents)
    for path, row in rows.items():
        for name in TIMES:
            api_value = moment(after[path][name])
            assert (moment(row[name]) if row[name] else None) == api_value, (path, name)
    assert rows["times/b.txt"]["released_at"]
    assert rows["times/a.txt"]["released_at"] == ""
    # The same times are in the database the admin reads.
    item = Item.objects.get(job=job, path="times/a.txt")
    assert item.started_at == moment(after["times/a.txt"]["started_at"])
