"""A failed job whose items failed says why in its own error (API v1 job detail): the counts
of its commonest item errors, when the job itself recorded none."""

import pytest

from staging.models import JobStatus
from staging.roles import Role
from tests.factories import ItemFactory, JobFactory

pytestmark = pytest.mark.django_db


def test_a_failed_jobs_error_summarises_its_items_errors(api_as):
    client = api_as(Role.DATA_USER)
    job = JobFactory(owner=client.user, status=JobStatus.FAILED, files_total=3, files_failed=3)
    for path in ("run2/a.txt", "run2/b.txt"):
        ItemFactory(job=job, path=path, status=JobStatus.FAILED, error="source file not found")
    ItemFactory(job=job, path="run2/c.txt", status=JobStatus.FAILED, error="permission denied")

    body = client.get(f"/api/v1/jobs/{job.uuid}/").json()

    assert body["error"] == "3 files failed (2: source file not found; 1: permission denied)"


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
