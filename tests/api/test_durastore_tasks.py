"""DuraStore's task calls (seed 003): GET /durastore/task and POST /durastore/task/{name}, on a
posix store and a posix-tape store. Jobs are created, not run (the integration tier runs them)."""

import pytest

from staging.models import Item, Job, JobStatus
from staging.roles import Role

pytestmark = pytest.mark.django_db

TEXT = "text/plain; charset=utf-8"
POSIX_TASKS = ["checksum", "noop", "release", "scan", "stage"]
TAPE_TASKS = ["checksum", "noop", "release", "restore-content", "scan", "stage"]


def xml_list(names: list[str]) -> bytes:
    return ("<list>" + "".join(f"<string>{n}</string>" for n in names) + "</list>").encode()


def perform(client, task: str, body: str = "", store: str | None = None):
    url = f"/durastore/task/{task}" + (f"?storeID={store}" if store else "")
    return client.generic("POST", url, body, content_type="text/plain")


def test_the_task_list_of_a_posix_store_is_xml(client_for, store):
    response = client_for().get("/durastore/task?storeID=primary")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/xml; charset=utf-8"
    assert response.content == xml_list(POSIX_TASKS)


def test_the_task_list_of_a_tape_store_adds_restore_content(client_for, store, tape_store):
    response = client_for().get("/durastore/task?storeID=tape")
    assert response.status_code == 200
    assert response.content == xml_list(TAPE_TASKS)


@pytest.mark.parametrize(("store_id", "names"), [("primary", POSIX_TASKS), ("tape", TAPE_TASKS)])
def test_the_task_list_is_json_when_asked_for(client_for, store, tape_store, store_id, names):
    response = client_for().get(
        f"/durastore/task?storeID={store_id}", HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == names


def test_without_a_store_id_the_primary_store_answers(client_for, store, tape_store):
    assert client_for().get("/durastore/task").content == xml_list(POSIX_TASKS)
    assert client_for().get("/durastore/task/").content == xml_list(POSIX_TASKS)


def test_an_unknown_store_id_is_404_in_plain_text(client_for, store):
    response = client_for().get("/durastore/task?storeID=nowhere")
    assert response.status_code == 404
    assert response["Content-Type"] == TEXT
    assert response.content == b"unknown store 'nowhere'"
    assert perform(client_for(), "noop", store="nowhere").status_code == 404


@pytest.mark.parametrize(("role", "status"), [(Role.ADMIN, 403), (Role.SERVICE_USER, 403)])
def test_roles_without_the_tasks_policy_are_refused(client_for, store, role, status):
    assert client_for(role).get("/durastore/task").status_code == status
    assert perform(client_for(role), "noop").status_code == status
    assert not Job.objects.exists()


def test_a_call_without_a_token_is_401_with_the_bearer_challenge(store):
    from rest_framework.test import APIClient

    response = APIClient().get("/durastore/task")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


def test_noop_ignores_its_body_and_answers_success_with_the_status_location(client_for, store):
    response = perform(client_for(), "noop", "<anything at all/>")
    assert response.status_code == 200
    assert response["Content-Type"] == TEXT
    assert response.content == b"Success"
    job = Job.objects.get()
    assert (job.task, job.source, job.status) == ("noop", "durastore", JobStatus.NOT_STARTED)
    assert response["Location"] == f"http://testserver/api/v1/task_status/{job.uuid}"
    assert job.subjobs.count() == 1 and not job.items.exists()


@pytest.mark.parametrize("task", ["enable-streaming", "restore-content", "NOOP", "a%20b"])
def test_an_unsupported_task_is_400_with_duraclouds_words(client_for, store, task):
    response = perform(client_for(), task, "space/content")
    assert response.status_code == 400
    assert response["Content-Type"] == TEXT
    name = task.replace("%20", " ")
    assert response.content.decode() == f"{name} is not a supported task."
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "A path including a space ID and a content ID (separated by a '/') is required."),
        ("no-separator", "separated by a '/'"),
        ("/content.txt", "separated by a '/'"),
        ("space/", "separated by a '/'"),
        (
            "space/../../etc/passwd",
            "contentID: paths are relative to the archive root: no leading /, no ..",
        ),
        ("space/missing.txt", "content item missing.txt does not exist in space space"),
    ],
)
def test_restore_content_with_bad_parameters_says_what_is_wrong(
    client_for, tape_store, archive_files, body, message
):
    archive_files({"space/present.txt": b"x"}, tape_store)
    response = perform(client_for(), "restore-content", body, store="tape")
    assert response.status_code in (400, 404)
    assert response.status_code == (404 if "missing" in body else 400)
    assert message in response.content.decode()
    assert not Job.objects.exists()


def test_restore_content_answers_in_duraclouds_words_with_a_14_day_lifetime(
    client_for, tape_store, archive_files
):
    archive_files({"genomes/run1/reads.fq": b"ACGT"}, tape_store)
    response = perform(client_for(), "restore-content", "genomes/run1/reads.fq", store="tape")
    assert response.status_code == 200
    assert response.content == (
        b"Request to restore content item run1/reads.fq in space genomes was successful."
    )
    job = Job.objects.get()
    assert (job.task, job.store, job.lifetime.days) == ("restore-content", tape_store, 14)
    assert list(job.items.values_list("path", flat=True)) == ["genomes/run1/reads.fq"]
    assert list(job.pins.values_list("path", flat=True)) == ["genomes/run1/reads.fq"]


def test_a_second_restore_while_one_is_in_progress_is_409_with_the_exact_text(
    client_for, tape_store, archive_files
):
    archive_files({"space/dir/item.bin": b"payload"}, tape_store)
    first = perform(client_for(), "restore-content", "space/dir/item.bin", store="tape")
    assert first.status_code == 200

    again = perform(client_for(Role.DATA_ADMIN), "restore-content", "space/dir/item.bin", "tape")
    assert again.status_code == 409
    assert again["Content-Type"] == TEXT
    assert again.content == b"Restore is already in progress for space/dir/item.bin"
    assert Job.objects.count() == 1

    Job.objects.update(status=JobStatus.FINISHED)  # the first restore has ended
    assert perform(client_for(), "restore-content", "space/dir/item.bin", "tape").status_code == 200
    assert Job.objects.count() == 2


@pytest.mark.parametrize(
    ("task", "body", "status", "message"),
    [
        (
            "scan",
            "../outside",
            400,
            "prefix: paths are relative to the archive root: no leading /, no ..",
        ),
        ("scan", "a.txt", 400, "prefix: a.txt is not a directory of store primary"),
        ("scan", "{not json", 400, "the body is not valid JSON"),
        ("checksum", '{"paths": ["a.txt"], "algorithm": "crc32"}', 400, "algorithm:"),
        ("checksum", "", 400, "name the files by ids or by paths"),
        ("checksum", '["a.txt"]', 400, "parameters must be a JSON object, not an array"),
        ("stage", "missing.txt", 404, "1 of 1 paths are not files in the archive"),
        ("stage", '{"paths": ["a.txt"], "verify": "maybe"}', 400, "verify:"),
        ("stage", '{"path": ["a.txt"]}', 400, "path: This parameter is not one this task takes"),
        ("release", '{"job": "not-a-uuid"}', 400, "job:"),
        ("release", '{"job": "6f1c4d1e-0000-4000-8000-000000000000"}', 404, "no job with id"),
    ],
)
def test_bad_parameters_are_refused_with_what_is_wrong_and_nothing_is_created(
    client_for, store, archive_files, task, body, status, message
):
    archive_files({"a.txt": b"alpha"})
    response = perform(client_for(), task, body)
    assert response.status_code == status, response.content
    assert response["Content-Type"] == TEXT
    assert message in response.content.decode()
    assert not Job.objects.exists()


def test_stage_takes_one_path_per_line(client_for, store, archive_files):
    archive_files({"a.txt": b"alpha", "dir/b.txt": b"beta"})
    response = perform(client_for(), "stage", "a.txt\ndir/b.txt\n")
    assert response.status_code == 200
    job = Job.objects.get()
    assert response.content.decode() == f"Request to stage 2 files was accepted as job {job.uuid}."
    assert sorted(Item.objects.filter(job=job).values_list("path", flat=True)) == [
        "a.txt",
        "dir/b.txt",
    ]


def test_a_scan_of_a_prefix_is_one_item_for_its_directory(client_for, store, archive_files):
    archive_files({"run1/a.txt": b"alpha"})
    response = perform(client_for(), "scan", "run1/")
    assert response.status_code == 200
    job = Job.objects.get()
    assert job.parameters == {"prefix": "run1"}
    assert list(job.items.values_list("path", flat=True)) == ["run1"]
