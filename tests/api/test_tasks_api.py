"""The task catalogue in API v1: GET /api/v1/tasks/ and POST /api/v1/tasks/{name}/ (202 with
Location: the job's task status). Jobs are created, not run (the integration tier runs them)."""

import json
from pathlib import Path

import pytest
import yaml

from staging.models import Job, JobStatus
from staging.roles import Role
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"
# Every task's parameter schema as the catalogue published it when the schemas were written by
# hand: generating them from the serializers must not change what a client reads.
PUBLISHED_SCHEMAS = Path(__file__).with_name("task_parameter_schemas.json")


def perform(client, task: str, body=None, store: str | None = None):
    url = f"/api/v1/tasks/{task}/" + (f"?storeID={store}" if store else "")
    return client.post(url, body, format="json")


def test_the_list_names_each_task_with_its_description_and_parameter_schema(client_for, store):
    response = client_for().get("/api/v1/tasks/")
    assert response.status_code == 200
    body = response.json()
    assert (body["storeID"], body["kind"]) == ("primary", "posix")
    by_name = {task["name"]: task for task in body["tasks"]}
    assert list(by_name) == ["checksum", "noop", "release", "scan", "stage"]
    assert all(task["description"] for task in body["tasks"])
    checksum = by_name["checksum"]["parameters"]
    assert checksum["type"] == "object" and checksum["additionalProperties"] is False
    assert checksum["properties"]["algorithm"] == {
        "type": "string",
        "enum": ["sha256", "md5", "adler32"],
        "description": "The checksum to compute.",
        "default": "sha256",
    }
    assert checksum["properties"]["paths"]["items"] == {"type": "string"}
    assert by_name["stage"]["parameters"]["properties"]["verify"]["type"] == "boolean"


def test_every_tasks_parameter_schema_is_the_one_published(client_for, store, tape_store):
    body = client_for().get("/api/v1/tasks/?storeID=tape").json()
    schemas = {task["name"]: task["parameters"] for task in body["tasks"]}
    assert schemas == json.loads(PUBLISHED_SCHEMAS.read_text())


def test_a_tape_store_lists_restore_content_with_its_required_parameters(
    client_for, store, tape_store
):
    body = client_for().get("/api/v1/tasks/?storeID=tape").json()
    assert body["kind"] == "posix-tape"
    restore = next(task for task in body["tasks"] if task["name"] == "restore-content")
    assert restore["parameters"]["required"] == ["spaceID", "contentID"]


def test_an_unknown_store_is_a_404_problem(client_for, store):
    response = client_for().get("/api/v1/tasks/?storeID=nowhere")
    assert response.status_code == 404
    assert response["Content-Type"] == PROBLEM


def test_performing_a_task_answers_202_with_the_task_status_location(client_for, store):
    response = perform(client_for(), "noop")
    assert response.status_code == 202
    job = Job.objects.get()
    assert response["Location"] == f"http://testserver/api/v1/task_status/{job.uuid}"
    assert response.json() == {
        "jobId": str(job.uuid),
        "task": "noop",
        "storeID": "primary",
        "status": "NOT_STARTED",
        "statusuri": f"http://testserver/api/v1/task_status/{job.uuid}",
        "resultsuri": f"http://testserver/api/v1/jobs/{job.uuid}/result",
    }
    assert job.source == "api"


def test_an_unsupported_task_is_a_400_problem_in_duraclouds_words(client_for, store):
    response = perform(client_for(), "restore-content", {"spaceID": "a", "contentID": "b"})
    assert response.status_code == 400
    assert response["Content-Type"] == PROBLEM
    assert response.json()["detail"] == "restore-content is not a supported task."
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (["a.txt"], "", "parameters must be a JSON object, not an array"),
        ({"paths": "a.txt"}, "paths", 'Expected a list of items but got type "str".'),
        ({"paths": [7]}, "paths", "Must be a string, not int."),
        (
            {"paths": ["/etc/passwd"]},
            "paths",
            "paths are relative to the archive root: no leading /, no ..",
        ),
        ({"ids": ["x"], "paths": ["a.txt"]}, "", "name the files by ids or by paths"),
        ({"paths": ["a.txt"], "algorithm": "sha1"}, "algorithm", '"sha1" is not a valid choice.'),
        ({"paths": ["a.txt"], "colour": "red"}, "colour", "not one this task takes"),
    ],
)
def test_bad_parameters_are_a_400_problem_naming_the_field(
    client_for, store, archive_files, body, field, message
):
    archive_files({"a.txt": b"alpha"})
    response = perform(client_for(), "checksum", body)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == PROBLEM
    problem = response.json()
    assert message in problem["detail"]
    assert problem["errors"][0]["field"] == field
    assert not Job.objects.exists()


def test_unknown_files_are_a_404_problem_listing_them(client_for, store, archive_files):
    archive_files({"a.txt": b"alpha"})
    response = perform(client_for(), "stage", {"paths": ["a.txt", "b.txt", "c.txt"]})
    assert response.status_code == 404
    assert response.json()["unknown_paths"] == ["b.txt", "c.txt"]
    assert not Job.objects.exists()


def test_stage_records_its_lifetime_and_verify_flag(client_for, store, archive_files):
    (file,) = archive_files({"a.txt": b"alpha"})
    response = perform(
        client_for(), "stage", {"ids": [file.id], "lifetime": "P2DT3H", "verify": True}
    )
    assert response.status_code == 202
    job = Job.objects.get()
    assert job.parameters == {"verify": True, "lifetime": "P2DT3H"}
    assert job.lifetime.total_seconds() == (2 * 24 + 3) * 3600


@pytest.mark.parametrize("lifetime", ["P0D", "P400D", "soon"])
def test_a_lifetime_outside_a_second_to_a_year_is_refused(
    client_for, store, archive_files, lifetime
):
    (file,) = archive_files({"a.txt": b"alpha"})
    response = perform(client_for(), "stage", {"ids": [file.id], "lifetime": lifetime})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "lifetime"


def test_release_of_another_users_job_is_404_and_of_a_running_job_409(client_for, store):
    theirs = JobFactory(store=store, status=JobStatus.FINISHED)
    response = perform(client_for(), "release", {"job": str(theirs.uuid)})
    assert response.status_code == 404

    client = client_for(Role.DATA_USER, username="owner")
    mine = JobFactory(store=store, owner__username="owner", status=JobStatus.RUNNING)
    response = perform(client, "release", {"job": str(mine.uuid)})
    assert response.status_code == 409
    assert "RUNNING" in response.json()["detail"]
    assert Job.objects.count() == 2


def test_admins_and_service_users_may_not_list_or_perform_tasks(client_for, store):
    for role in (Role.ADMIN, Role.SERVICE_USER):
        assert client_for(role).get("/api/v1/tasks/").status_code == 403
        assert perform(client_for(role), "noop").status_code == 403
    assert not Job.objects.exists()


def test_the_openapi_schema_describes_the_task_calls_in_both_dialects(client):
    paths = yaml.safe_load(client.get("/api/schema/").content)["paths"]
    assert {"/api/v1/tasks/", "/api/v1/tasks/{task_name}/"} <= set(paths)
    perform = paths["/api/v1/tasks/{task_name}/"]["post"]
    assert {"202", "400", "404", "409"} <= set(perform["responses"])
    durastore = paths["/durastore/task/{task_name}"]["post"]
    assert list(durastore["responses"]["200"]["content"]) == ["text/plain"]
    assert list(durastore["responses"]["409"]["content"]) == ["text/plain"]
