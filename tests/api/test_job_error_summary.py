"""A failed job whose items failed says why in its own error (API v1 job detail): the counts
of its commonest item errors, when the job itself recorded none."""

import pytest

from staging.models import JobStatus
from staging.roles import Role
from tests.factories import ItemFactory, JobFactory

pytestmark = pytest.mark.django_db


def failed_item(job, path: str, error: str):
    return ItemFactory(job=job, path=path, status=JobStatus.FAILED, error=error)


def test_a_failed_jobs_error_counts_its_items_errors_by_reason_with_their_paths(api_as):
    client = api_as(Role.DATA_USER)
    job = JobFactory(owner=client.user, status=JobStatus.FAILED, files_total=3, files_failed=3)
    for path in ("run2/a.txt", "run2/b.txt"):
        failed_item(job, path, f"source file not found: {path}")
    failed_item(job, "run2/c.txt", "permission denied: run2/c.txt")

    body = client.get(f"/api/v1/jobs/{job.uuid}/").json()

    assert body["error"] == (
        "3 files failed: source file not found (2: run2/a.txt, run2/b.txt); "
        "permission denied (1: run2/c.txt)"
    )


def test_the_summary_names_the_first_few_paths_and_how_many_more(api_as):
    client = api_as(Role.DATA_USER)
    job = JobFactory(owner=client.user, status=JobStatus.PARTIALLY_FAILED)
    for n in range(120):
        failed_item(job, f"run2/{n:03d}", f"source file not found: run2/{n:03d}")
    for n in range(5):
        failed_item(job, f"x{n}", f"x{n} is a FIFO, not a regular file")
    for reason in ("mismatch one", "mismatch two", "mismatch three"):
        failed_item(job, reason, "the copy has 1 bytes, expected 2")
    failed_item(job, "%_odd", "permission denied: %_odd")

    body = client.get(f"/api/v1/jobs/{job.uuid}/").json()

    assert body["error"] == (
        "129 files failed: source file not found (120: run2/000, run2/001, run2/002 and 117 "
        "more); is a FIFO, not a regular file (5: x0, x1, x2 and 2 more); the copy has 1 bytes, "
        "expected 2 (3: mismatch one, mismatch three, mismatch two); 1 more for other reasons"
    )


def test_a_jobs_own_error_is_kept_as_it_is(api_as):
    client = api_as(Role.DATA_USER)
    job = JobFactory(
        owner=client.user, status=JobStatus.FAILED, error="none of the files is in the archive"
    )
    ItemFactory(job=job, path="x", status=JobStatus.FAILED, error="no such file in the archive")
    assert client.get(f"/api/v1/jobs/{job.uuid}/").json()["error"] == (
        "none of the files is in the archive"
    )


def test_a_finished_job_has_no_error(api_as):
    client = api_as(Role.DATA_USER)
    job = JobFactory(owner=client.user, status=JobStatus.FINISHED)
    ItemFactory(job=job, path="x", status=JobStatus.FINISHED)
    assert client.get(f"/api/v1/jobs/{job.uuid}/").json()["error"] == ""
