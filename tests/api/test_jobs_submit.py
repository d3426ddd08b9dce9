"""POST /api/v1/jobs/: 202 + status monitor, by ids or by paths, Idempotency-Key, refusals."""

import os
from pathlib import Path

import pytest

from staging.models import File, Item, Job, JobStatus, Pin, Store
from staging.roles import Role
from staging.services import job_requests
from tests.api.helpers import assert_problem

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/jobs/"


def submit(client, body, **headers):
    return client.post(JOBS, body, format="json", **headers)


def test_it_accepts_a_job_by_ids_with_202_and_the_status_monitor(api_as, archive_files):
    files = archive_files({"a.txt": b"alpha", "run/b.bin": b"beta"})
    client = api_as(Role.DATA_USER)

    response = submit(client, {"task": "stage", "ids": [f.id for f in files]})

    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"jobId", "status", "statusuri", "resultsuri"}
    assert body["status"] == "NOT_STARTED"
    assert body["statusuri"] == f"http://testserver/api/v1/task_status/{body['jobId']}"
    assert body["resultsuri"] == f"http://testserver/api/v1/jobs/{body['jobId']}/result"
    assert response["Location"] == body["statusuri"]
    assert int(response["Retry-After"]) > 0
    job = Job.objects.get(uuid=body["jobId"])
    assert (job.task, job.source, job.owner, job.files_total) == ("stage", "api", client.user, 2)
    assert sorted(job.items.values_list("path", flat=True)) == ["a.txt", "run/b.bin"]
    assert Pin.objects.filter(job=job).count() == 2


def test_the_task_defaults_to_stage_and_the_store_to_the_primary(api_as, archive_files):
    (file,) = archive_files({"a.txt": b"alpha"})
    response = submit(api_as(Role.DATA_USER), {"ids": [file.id]})
    job = Job.objects.get(uuid=response.json()["jobId"])
    assert (job.task, job.store.slug) == ("stage", "primary")


def test_paths_not_yet_in_the_catalogue_are_added_from_a_stat(api_as, store):
    archive = Path(store.archive_root)
    (archive / "new").mkdir()
    (archive / "new" / "reads.fastq").write_bytes(b"@r1\nACGT\n")

    response = submit(api_as(Role.DATA_USER), {"paths": ["new//reads.fastq"]})

    assert response.status_code == 202
    entry = File.objects.get(store=store, path="new/reads.fastq")
    assert entry.id == File.id_for("primary", "new/reads.fastq")
    assert (entry.size, entry.present) == (9, True)
    item = Item.objects.get(job__uuid=response.json()["jobId"])
    assert (item.path, item.file_id, item.size) == ("new/reads.fastq", entry.id, 9)


def test_a_path_whose_file_changed_refreshes_its_catalogue_entry(api_as, store, archive_files):
    (entry,) = archive_files({"a.txt": b"alpha"})
    File.objects.filter(pk=entry.pk).update(md5="0" * 32)
    target = Path(store.archive_root) / "a.txt"
    target.write_bytes(b"alpha, longer now")
    os.utime(target, (1_900_000_000, 1_900_000_000))

    assert submit(api_as(Role.DATA_USER), {"paths": ["a.txt"]}).status_code == 202

    entry.refresh_from_db()
    assert (entry.size, entry.md5) == (17, "")


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/hostname", "a/../../x", "/run1/x"])
def test_paths_not_written_relative_are_refused_with_the_one_rule(api_as, store, path):
    response = submit(api_as(Role.DATA_USER), {"paths": [path]})

    body = assert_problem(
        response, 400, "paths are relative to the archive root: no leading /, no ..", repr(path)
    )
    assert body["field"] == "paths"
    assert not Job.objects.exists()
    assert not File.objects.exists()


def test_a_symlink_out_of_the_archive_is_refused_and_nothing_is_written(api_as, store, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret.txt").write_text("secret")
    (Path(store.archive_root) / "escape").symlink_to(tmp_path / "elsewhere")

    response = submit(api_as(Role.DATA_USER), {"paths": ["escape/secret.txt"]})

    body = assert_problem(response, 400, "leave the archive")
    assert (body["field"], body["unsafe_paths"]) == ("paths", ["escape/secret.txt"])
    assert not Job.objects.exists()
    assert not File.objects.exists()


def test_paths_that_are_missing_or_directories_are_a_404_naming_each(api_as, store):
    (Path(store.archive_root) / "adir").mkdir()
    (Path(store.archive_root) / "here.txt").write_text("here")

    response = submit(api_as(Role.DATA_USER), {"paths": ["here.txt", "adir", "gone.txt"]})

    body = assert_problem(response, 404, "adir", "gone.txt")
    assert body["unknown_paths"] == ["adir", "gone.txt"]
    assert not Job.objects.exists()
    assert not File.objects.exists()


def test_unknown_ids_and_ids_of_another_store_are_a_404(api_as, archive_files, tmp_path):
    (ours,) = archive_files({"a.txt": b"alpha"})
    other = Store.objects.create(
        slug="tape", archive_root=str(tmp_path / "t-archive"), staging_root=str(tmp_path / "t")
    )
    Path(other.archive_root).mkdir()
    (theirs,) = archive_files({"b.txt": b"beta"}, target=other)

    response = submit(api_as(Role.DATA_USER), {"ids": [ours.id, theirs.id, "nope"]})

    body = assert_problem(response, 404, "not files of store primary", theirs.id, "nope")
    assert (body["unknown_ids"], body["unknown_ids_count"]) == ([theirs.id, "nope"], 2)
    assert not Job.objects.exists()


def test_a_named_store_is_used(api_as, archive_files, tmp_path):
    other = Store.objects.create(
        slug="tape", archive_root=str(tmp_path / "t-archive"), staging_root=str(tmp_path / "t")
    )
    Path(other.archive_root).mkdir()
    (file,) = archive_files({"b.txt": b"beta"}, target=other)
    response = submit(api_as(Role.DATA_USER), {"store": "tape", "ids": [file.id]})
    assert Job.objects.get(uuid=response.json()["jobId"]).store == other


def test_an_unknown_store_is_a_400_on_the_store_field(api_as, store):
    body = assert_problem(submit(api_as(Role.DATA_USER), {"store": "nope", "ids": ["x"]}), 400)
    assert body["field"] == "store"


@pytest.mark.parametrize(
    ("task", "body"),
    [
        ("checksum", {"paths": ["a.txt"], "parameters": {"algorithm": "md5"}}),
        ("noop", {}),
        ("scan", {"parameters": {"prefix": "run1"}}),
    ],
)
def test_every_catalogue_task_runs_as_a_job(api_as, archive_files, task, body):
    archive_files({"a.txt": b"alpha", "run1/b.txt": b"beta"})
    response = submit(api_as(Role.DATA_USER), {"task": task, **body})
    assert response.status_code == 202, response.json()
    assert Job.objects.get(uuid=response.json()["jobId"]).task == task


def test_a_task_the_catalogue_does_not_have_is_refused_naming_the_task_field(api_as, store):
    response = submit(api_as(Role.DATA_USER), {"task": "enable-streaming"})
    body = assert_problem(response, 400)
    assert (body["detail"], body["field"]) == ("enable-streaming is not a supported task.", "task")
    assert not Job.objects.exists()


def test_stage_refuses_parameters_it_does_not_take(api_as, archive_files):
    (file,) = archive_files({"a.txt": b"alpha"})
    response = submit(api_as(Role.DATA_USER), {"ids": [file.id], "parameters": {"x": 1}})
    body = assert_problem(response, 400, "x: This parameter is not one this task takes.")
    assert body["field"] == "x"


def test_a_parameter_given_twice_is_refused(api_as, archive_files):
    (file,) = archive_files({"a.txt": b"alpha"})
    response = submit(api_as(Role.DATA_USER), {"ids": [file.id], "parameters": {"ids": [file.id]}})
    assert assert_problem(response, 400, "ids given both")["field"] == "ids"


@pytest.mark.parametrize(
    ("lifetime", "expected_days"), [("P7D", 7), ("P1DT12H", 1.5), ("PT86400S", 1), ("P2W", 14)]
)
def test_the_lifetime_is_an_iso_8601_duration(api_as, archive_files, lifetime, expected_days):
    (file,) = archive_files({"a.txt": b"alpha"})
    response = submit(api_as(Role.DATA_USER), {"ids": [file.id], "lifetime": lifetime})
    job = Job.objects.get(uuid=response.json()["jobId"])
    assert job.lifetime.total_seconds() == expected_days * 86400


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, ""),
        ({"ids": ["a"], "paths": ["b"]}, ""),
        ({"ids": []}, "ids"),
        ({"ids": [1]}, "ids"),
        ({"ids": "abc"}, "ids"),
        ({"paths": [None]}, "paths"),
        ({"ids": ["a"], "lifetime": "soon"}, "lifetime"),
        ({"ids": ["a"], "lifetime": "-P1D"}, "lifetime"),
        ({"ids": ["a"], "lifetime": 86400}, "lifetime"),
        ({"ids": ["a"], "lifetime": "PT0S"}, "lifetime"),
        ({"ids": ["a"], "lifetime": "P5000D"}, "lifetime"),
        ({"ids": ["a"], "parameters": []}, "parameters"),
        ({"ids": ["a"], "task": 7}, "task"),
    ],
)
def test_malformed_bodies_are_400_problems_naming_the_field(api_as, store, body, field):
    response = submit(api_as(Role.DATA_USER), body)
    problem = assert_problem(response, 400)
    assert problem.get("field", "") == field
    assert problem["errors"]
    assert not Job.objects.exists()


def test_more_ids_than_the_limit_are_refused(api_as, store, settings):
    settings.STAGING = {**settings.STAGING, "MAX_FILES_PER_REQUEST": 2}
    response = submit(api_as(Role.DATA_USER), {"ids": ["a", "b", "c"]})
    assert assert_problem(response, 400, "At most 2 ids")["field"] == "ids"


def test_the_same_idempotency_key_and_body_return_the_same_job(api_as, archive_files):
    (file,) = archive_files({"a.txt": b"alpha"})
    client = api_as(Role.DATA_USER)
    first = submit(client, {"ids": [file.id], "lifetime": "P7D"}, HTTP_IDEMPOTENCY_KEY="abc-1")
    # The same JSON with its members in another order is the same body.
    again = submit(client, {"lifetime": "P7D", "ids": [file.id]}, HTTP_IDEMPOTENCY_KEY="abc-1")

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert again["Location"] == first["Location"]
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Job.objects.count() == 1


def test_the_same_idempotency_key_with_another_body_is_refused_with_422(api_as, archive_files):
    a, b = archive_files({"a.txt": b"alpha", "b.txt": b"beta"})
    client = api_as(Role.DATA_USER)
    first = submit(client, {"ids": [a.id]}, HTTP_IDEMPOTENCY_KEY="abc-1")

    response = submit(client, {"ids": [b.id]}, HTTP_IDEMPOTENCY_KEY="abc-1")

    body = assert_problem(response, 422, "abc-1", "different request body")
    assert (body["field"], body["jobId"]) == ("Idempotency-Key", first.json()["jobId"])
    assert Job.objects.count() == 1


def test_a_racing_request_with_the_same_key_gets_the_job_that_won(
    api_as, archive_files, monkeypatch
):
    (file,) = archive_files({"a.txt": b"alpha"})
    client = api_as(Role.DATA_USER)
    first = submit(client, {"ids": [file.id]}, HTTP_IDEMPOTENCY_KEY="k")
    # The second request looks before the first one is visible, then loses on the unique key.
    lookups = []
    real_lookup = job_requests.job_by_idempotency_key

    def first_lookup_misses(**kwargs):
        lookups.append(kwargs)
        return None if len(lookups) == 1 else real_lookup(**kwargs)

    monkeypatch.setattr(job_requests, "job_by_idempotency_key", first_lookup_misses)

    second = submit(client, {"ids": [file.id]}, HTTP_IDEMPOTENCY_KEY="k")

    assert (second.status_code, second.json()["jobId"]) == (202, first.json()["jobId"])
    assert second["Idempotent-Replayed"] == "true"
    assert len(lookups) == 2
    assert Job.objects.count() == 1


def test_idempotency_keys_belong_to_their_user(api_as, archive_files):
    (file,) = archive_files({"a.txt": b"alpha"})
    mine = submit(api_as(Role.DATA_USER, "ann"), {"ids": [file.id]}, HTTP_IDEMPOTENCY_KEY="k")
    theirs = submit(api_as(Role.DATA_USER, "bob"), {"ids": [file.id]}, HTTP_IDEMPOTENCY_KEY="k")
    assert mine.json()["jobId"] != theirs.json()["jobId"]
    assert Job.objects.count() == 2


@pytest.mark.parametrize("key", ["x" * 129, "   ", "tab\there"])
def test_a_malformed_idempotency_key_is_refused(api_as, archive_files, key):
    (file,) = archive_files({"a.txt": b"alpha"})
    response = submit(api_as(Role.DATA_USER), {"ids": [file.id]}, HTTP_IDEMPOTENCY_KEY=key)
    assert assert_problem(response, 400, "Idempotency-Key")["field"] == "Idempotency-Key"
    assert not Job.objects.exists()


@pytest.mark.parametrize("role", [Role.DATA_ADMIN, Role.DATA_USER, Role.COLLECTION_ADMIN])
def test_data_roles_may_submit(api_as, archive_files, role):
    (file,) = archive_files({"a.txt": b"alpha"})
    assert submit(api_as(role), {"ids": [file.id]}).status_code == 202


@pytest.mark.parametrize("role", [Role.ADMIN, Role.SERVICE_USER])
def test_admin_and_service_user_may_not_submit(api_as, archive_files, role):
    (file,) = archive_files({"a.txt": b"alpha"})
    assert_problem(submit(api_as(role), {"ids": [file.id]}), 403, "role")
    assert not Job.objects.exists()


def test_without_a_token_it_is_401_with_a_bearer_challenge(client, store):
    response = client.post(JOBS, {"ids": ["a"]}, content_type="application/json")
    assert_problem(response, 401)
    assert response["WWW-Authenticate"] == "Bearer"


def test_a_submitted_job_starts_not_started_with_its_items_queued(api_as, archive_files):
    files = archive_files({"a.txt": b"alpha", "b.txt": b"beta"})
    response = submit(api_as(Role.DATA_USER), {"ids": [f.id for f in files]})
    job = Job.objects.get(uuid=response.json()["jobId"])
    assert set(job.items.values_list("status", flat=True)) == {JobStatus.NOT_STARTED}
    assert job.subjobs.count() == 1
