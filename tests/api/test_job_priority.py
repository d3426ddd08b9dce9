"""A job's priority: `priority` on API v1's jobs and `targetedMetadata.<sitename>.priority` on
the tape API; 1 to 5, default 3; anything else a 400 that names it, and nothing created."""

import pytest
from django.conf import settings

from staging.models import Job
from staging.roles import Role
from tests.api import helpers, tape_helpers

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/jobs/"


def submit(client, **body):
    return client.post(JOBS, {"paths": ["a.txt"], **body}, format="json")


def test_a_job_has_the_priority_it_asked_for_and_shows_it(api_as, archive_files):
    archive_files({"a.txt": b"a"})
    client = api_as(Role.DATA_USER)

    response = submit(client, priority=5)

    assert response.status_code == 202, response.content
    job = Job.objects.get(uuid=response.json()["jobId"])
    assert job.priority == 5
    assert client.get(f"{JOBS}{job.uuid}/").json()["priority"] == 5


def test_a_job_without_a_priority_has_the_default_three(api_as, archive_files):
    archive_files({"a.txt": b"a"})

    response = submit(api_as(Role.DATA_USER))

    assert Job.objects.get(uuid=response.json()["jobId"]).priority == 3


@pytest.mark.parametrize("priority", [0, 6, "high", None, 2.5])
def test_a_priority_outside_one_to_five_is_a_400(api_as, archive_files, priority):
    archive_files({"a.txt": b"a"})

    response = submit(api_as(Role.DATA_USER), priority=priority)

    body = helpers.assert_problem(response, 400)
    assert "priority" in str(body)
    assert not Job.objects.exists()


def tape_priority(value) -> dict:
    return {"targetedMetadata": {settings.TAPE["SITENAME"]: {"priority": value}}}


def test_a_tape_request_takes_the_highest_priority_its_files_ask_for(client_for, archive_files):
    archive_files({"a.txt": b"a", "b.txt": b"b", "c.txt": b"c"})
    site = settings.TAPE["SITENAME"]
    files = [
        {"path": "/a.txt", "targetedMetadata": {site: {"priority": 2}}},
        {"path": "/b.txt", "targetedMetadata": {site: {"priority": 4}}},
        {"path": "/c.txt"},
    ]

    response = client_for(Role.DATA_USER).post(
        f"{tape_helpers.API}/stage", {"files": files}, format="json"
    )

    assert response.status_code == 201, response.content
    assert Job.objects.get(uuid=response.json()["requestId"]).priority == 4


def test_a_tape_request_without_a_priority_has_the_default(client_for, archive_files):
    archive_files({"a.txt": b"a"})

    job = tape_helpers.staged_job(client_for(Role.DATA_USER), "/a.txt")

    assert job.priority == 3


@pytest.mark.parametrize("priority", [0, 9, "5", True])
def test_a_tape_priority_outside_one_to_five_is_a_400(client_for, archive_files, priority):
    archive_files({"a.txt": b"a"})

    response = tape_helpers.stage(client_for(Role.DATA_USER), "/a.txt", **tape_priority(priority))

    assert response.status_code == 400, response.content
    assert "priority must be an integer from 1 to 5" in response.content.decode()
    assert not Job.objects.exists()
