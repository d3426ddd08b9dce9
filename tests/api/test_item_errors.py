"""A file that fails says why in words that name its store path, never the server's archive or
staging root: in the API's items and results, the tape API, the status calls and the admin.
The sub-jobs run in this process with the calls a worker makes (the integration tier runs
the same failures through real workers)."""

import csv
import errno
import io
import json
import os
from pathlib import Path

import pytest
from django.test import Client

from staging.models import Job, JobStatus, Store
from staging.roles import Role
from staging.services.execution import stage_item, subjob_run
from staging.services.tasks import task_perform
from tests.admin.conftest import staff
from tests.api.tape_helpers import API, staged_job
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

MISSING, FIFO, UNREADABLE, GOOD = "run2/b.txt", "run2/f.txt", "run2/p.txt", "run2/ok.txt"


def work_refusing_unreadable(item, store: Store, reporter) -> None:
    """The stage work, except that reading UNREADABLE fails as the kernel refuses a file the
    service may not read. These tests run as root, whom permission bits do not stop, so the
    refusal is raised here with the absolute path the kernel would name."""
    if item.path == UNREADABLE:
        where = str(Path(store.archive_root).resolve() / UNREADABLE)
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), where)
    stage_item(item, store, reporter)


def run_subjobs(job: Job) -> Job:
    for subjob in job.subjobs.all():
        subjob_run(
            subjob_id=subjob.pk, worker="node@host:1", task_id="t", work=work_refusing_unreadable
        )
    job.refresh_from_db()
    return job


def break_files(store: Store) -> None:
    """After the request was accepted: one file gone, one become a FIFO."""
    archive = Path(store.archive_root)
    (archive / MISSING).unlink()
    (archive / FIFO).unlink()
    os.mkfifo(archive / FIFO)


@pytest.fixture
def files(store, archive_files):
    return archive_files({name: b"data" for name in (MISSING, FIFO, UNREADABLE, GOOD)})


EXPECTED_ERRORS = {
    MISSING: f"source file not found: {MISSING}",
    FIFO: f"{FIFO} is a FIFO, not a regular file",
    UNREADABLE: f"permission denied: {UNREADABLE}",
}


@pytest.fixture
def failed_job(api_as, store, files) -> tuple:
    client = api_as(Role.DATA_USER)
    response = client.post(
        "/api/v1/jobs/", {"task": "stage", "paths": [f.path for f in files]}, format="json"
    )
    assert response.status_code in (201, 202), response.content
    job = Job.objects.get(uuid=response.json()["jobId"])
    break_files(store)
    return client, run_subjobs(job)


def assert_no_root_in(text: str, store: Store) -> None:
    for root in (store.archive_root, store.staging_root):
        assert root not in text
        assert str(Path(root).resolve()) not in text


def test_the_items_list_names_store_paths(failed_job, store):
    client, job = failed_job
    assert job.status == JobStatus.PARTIALLY_FAILED

    body = client.get(f"/api/v1/jobs/{job.uuid}/items/", {"status": "FAILED"}).json()

    assert {item["path"]: item["error"] for item in body["results"]} == EXPECTED_ERRORS


def test_the_csv_results_name_store_paths(failed_job, store):
    client, job = failed_job

    response = client.get(f"/api/v1/jobs/{job.uuid}/result", HTTP_ACCEPT="text/csv")

    text = b"".join(response.streaming_content).decode()
    assert_no_root_in(text, store)
    rows = csv.DictReader(io.StringIO(text))
    assert {row["path"]: row["error"] for row in rows if row["error"]} == EXPECTED_ERRORS


def test_a_partially_failed_job_says_why_by_reason_with_store_paths(failed_job, store):
    client, job = failed_job
    why = (
        "3 files failed: is a FIFO, not a regular file (1: run2/f.txt); "
        "permission denied (1: run2/p.txt); source file not found (1: run2/b.txt)"
    )

    detail = client.get(f"/api/v1/jobs/{job.uuid}/").json()
    peek = client.get(f"/api/v1/task_status/{job.uuid}/peek").json()
    results = json.loads(b"".join(client.get(f"/api/v1/task_status/{job.uuid}").streaming_content))
    dts = client.get(f"/dts/staging?id={job.uuid}").json()

    assert detail["error"] == why
    assert (peek["status"], peek["error"]) == ("PARTIALLY_FAILED", why)
    assert results["error"] == why
    assert dts == {"status": "failed", "error": why}


def test_the_admin_item_page_names_store_paths(failed_job, store):
    _, job = failed_job
    admin = Client()
    admin.force_login(staff("olivia", Role.DATA_ADMIN))

    page = admin.get(f"/admin/staging/item/?job={job.pk}&status=FAILED").content.decode()

    for error in EXPECTED_ERRORS.values():
        assert error in page
    assert_no_root_in(page, store)


def test_the_tape_api_names_store_paths(client_for, store, files):
    client = client_for(Role.DATA_USER)
    job = staged_job(client, *(f"/{f.path}" for f in files))
    break_files(store)
    run_subjobs(job)

    body = client.get(f"{API}/stage/{job.uuid}").json()

    errors = {f["path"]: f.get("error") for f in body["files"] if f["state"] == "FAILED"}
    assert errors == {f"/{path}": error for path, error in EXPECTED_ERRORS.items()}
    assert_no_root_in(str(body), store)


def test_the_status_of_a_job_that_did_not_fail_has_no_error(api_as, store, archive_files):
    client = api_as(Role.DATA_USER)
    archive_files({GOOD: b"data"})
    response = client.post("/api/v1/jobs/", {"task": "stage", "paths": [GOOD]}, format="json")
    job = run_subjobs(Job.objects.get(uuid=response.json()["jobId"]))

    assert job.status == JobStatus.FINISHED
    assert "error" not in client.get(f"/api/v1/task_status/{job.uuid}/peek").json()
    assert client.get(f"/dts/staging?id={job.uuid}").json() == {"status": "ready"}


def test_a_subjob_interrupted_by_an_unexpected_error_records_it_without_server_paths(store, files):
    job = task_perform(
        owner=UserFactory(),
        store=store,
        task_name="stage",
        source="api",
        parameters={"paths": [f.path for f in files]},
    )
    archive = Path(store.archive_root).resolve()

    def work_that_breaks(item, store, reporter):
        raise RuntimeError(f"index corrupt near {archive}/run2/index.db")

    subjob = job.subjobs.get()
    with pytest.raises(RuntimeError):
        subjob_run(subjob_id=subjob.pk, worker="node@host:1", task_id="t", work=work_that_breaks)

    subjob.refresh_from_db()
    assert subjob.error == "RuntimeError: index corrupt near run2/index.db"
