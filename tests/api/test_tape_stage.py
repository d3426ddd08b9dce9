"""WLCG tape API: POST {uri}/stage and GET {uri}/stage/{id}."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from staging.models import File, Item, Job, JobStatus, Pin
from staging.roles import Role
from tests.api.helpers import assert_problem
from tests.api.tape_helpers import API, second_store, stage, staged_job

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("slash", ["", "/"])
def test_it_creates_a_request_and_answers_201_with_its_id_and_location(
    client_for, archive_files, slash
):
    archive_files({"run1/a.fastq": b"ACGT", "run1/b.fastq": b"TTGA"})
    response = stage(client_for(Role.DATA_USER), "/run1/a.fastq", "/run1/b.fastq", slash=slash)

    assert response.status_code == 201, response.content
    request_id = response.json()["requestId"]
    assert response.json() == {"requestId": request_id}
    assert response["Location"] == f"http://testserver{API}/stage/{request_id}"
    job = Job.objects.get(uuid=request_id)
    assert (job.source, job.status, job.files_total, job.bytes_total) == (
        "tape",
        JobStatus.NOT_STARTED,
        2,
        8,
    )
    assert sorted(job.items.values_list("path", flat=True)) == ["run1/a.fastq", "run1/b.fastq"]


def test_a_new_request_lists_every_file_as_submitted_with_epoch_seconds(client_for, archive_files):
    archive_files({"a.txt": b"a", "b.txt": b"b"})
    client = client_for()
    request_id = stage(client, "/a.txt", "/b.txt").json()["requestId"]

    body = client.get(f"{API}/stage/{request_id}").json()

    job = Job.objects.get(uuid=request_id)
    assert body == {
        "id": request_id,
        "createdAt": int(job.created_at.timestamp()),
        "startedAt": int(job.created_at.timestamp()),
        "files": [
            {"path": "/a.txt", "state": "SUBMITTED"},
            {"path": "/b.txt", "state": "SUBMITTED"},
        ],
    }


def test_each_item_status_maps_to_its_tape_state_with_its_times(client_for, archive_files):
    names = ["queued", "running", "done", "broken", "stopped"]
    archive_files({name: b"x" for name in names})
    client = client_for()
    job = staged_job(client, *(f"/{name}" for name in names))
    started, finished = timezone.now() - timedelta(minutes=5), timezone.now()
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, started_at=started)
    items = Item.objects.filter(job=job)
    items.filter(path="running").update(status=JobStatus.RUNNING, started_at=started)
    items.filter(path="done").update(
        status=JobStatus.FINISHED, started_at=started, finished_at=finished
    )
    items.filter(path="broken").update(
        status=JobStatus.FAILED, error="source file not found", finished_at=finished
    )
    items.filter(path="stopped").update(status=JobStatus.CANCELLED, finished_at=finished)

    body = client.get(f"{API}/stage/{job.uuid}").json()

    s, f = int(started.timestamp()), int(finished.timestamp())
    assert body["startedAt"] == s
    assert "completedAt" not in body
    assert body["files"] == [
        {"path": "/queued", "state": "SUBMITTED"},
        {"path": "/running", "state": "STARTED", "startedAt": s},
        {"path": "/done", "state": "COMPLETED", "startedAt": s, "finishedAt": f},
        {
            "path": "/broken",
            "state": "FAILED",
            "startedAt": f,
            "finishedAt": f,
            "error": "source file not found",
        },
        {"path": "/stopped", "state": "CANCELLED", "startedAt": f, "finishedAt": f},
    ]


def test_a_finished_request_says_when_it_completed(client_for, archive_files):
    archive_files({"a.txt": b"a"})
    client = client_for()
    job = staged_job(client, "/a.txt")
    finished = timezone.now()
    Job.objects.filter(pk=job.pk).update(status=JobStatus.FINISHED, finished_at=finished)

    body = client.get(f"{API}/stage/{job.uuid}/").json()

    assert body["completedAt"] == int(finished.timestamp())


def test_paths_are_sanitised_and_echoed_as_the_client_named_them(
    tmp_path, client_for, archive_files
):
    cold = second_store(tmp_path)
    archive_files({"x/in-cold.dat": b"cold"}, cold)
    archive_files({"x/in-primary.dat": b"warm"})
    client = client_for()

    cold_job = staged_job(client, "//cold//x/in-cold.dat")
    named_job = staged_job(client, "/primary/x/in-primary.dat")
    bare_job = staged_job(client, "/x//in-primary.dat")

    assert (cold_job.store, cold_job.items.get().path) == (cold, "x/in-cold.dat")
    assert named_job.store.slug == bare_job.store.slug == "primary"
    assert named_job.items.get().path == bare_job.items.get().path == "x/in-primary.dat"
    for job, echoed in [
        (cold_job, "/cold/x/in-cold.dat"),
        (named_job, "/primary/x/in-primary.dat"),
        (bare_job, "/x/in-primary.dat"),
    ]:
        files = client.get(f"{API}/stage/{job.uuid}").json()["files"]
        assert [f["path"] for f in files] == [echoed]


def test_one_request_may_name_its_store_in_both_ways(client_for, archive_files):
    archive_files({"a.txt": b"a", "b.txt": b"b"})
    client = client_for()
    job = staged_job(client, "/primary/a.txt", "/b.txt", "/primary/a.txt")

    files = client.get(f"{API}/stage/{job.uuid}").json()["files"]

    assert [f["path"] for f in files] == ["/primary/a.txt", "/b.txt"]


def test_files_no_scan_has_indexed_yet_are_catalogued_by_stat(client_for, store):
    (Path(store.archive_root) / "new").mkdir()
    (Path(store.archive_root) / "new" / "fresh.bin").write_bytes(b"12345")

    job = staged_job(client_for(), "/new/fresh.bin")

    entry = File.objects.get(store=store, path="new/fresh.bin")
    assert (entry.id, entry.size, entry.present) == (
        File.id_for("primary", "new/fresh.bin"),
        5,
        True,
    )
    assert job.items.get().file == entry
    assert job.bytes_total == 5


def test_missing_files_fail_on_their_own_and_the_rest_is_staged(client_for, archive_files, store):
    archive_files({"here.txt": b"here"})
    (Path(store.archive_root) / "adir").mkdir()
    client = client_for()

    job = staged_job(client, "/here.txt", "/gone.txt", "/adir")

    assert job.status == JobStatus.NOT_STARTED
    assert job.files_total == 3
    assert job.subjobs.get().files_total == 1
    files = client.get(f"{API}/stage/{job.uuid}").json()["files"]
    by_path = {f["path"]: f for f in files}
    assert by_path["/here.txt"]["state"] == "SUBMITTED"
    assert by_path["/gone.txt"]["state"] == "FAILED"
    assert by_path["/gone.txt"]["error"] == "no such file in the archive"
    assert by_path["/adir"]["error"] == "the path is a directory"
    assert list(job.pins.values_list("path", flat=True)) == ["here.txt"]


def test_a_request_with_no_file_in_the_archive_is_failed_at_once(client_for, store):
    client = client_for()
    job = staged_job(client, "/nothing/here.txt")

    assert job.status == JobStatus.FAILED
    assert not job.subjobs.exists()
    body = client.get(f"{API}/stage/{job.uuid}").json()
    assert body["completedAt"] == int(job.finished_at.timestamp())
    assert body["files"][0]["state"] == "FAILED"


def test_disk_lifetime_becomes_the_pin_lifetime(client_for, archive_files):
    archive_files({"a.txt": b"a", "b.txt": b"b"})
    client = client_for()
    before = timezone.now()

    job = staged_job(client, "/a.txt", diskLifetime="PT1H")

    assert job.lifetime == timedelta(hours=1)
    pin = Pin.objects.get(job=job)
    assert before + timedelta(hours=1) <= pin.expires_at <= timezone.now() + timedelta(hours=1)


def test_the_longest_disk_lifetime_wins_and_none_means_the_default(
    client_for, archive_files, settings
):
    archive_files({"a.txt": b"a", "b.txt": b"b"})
    client = client_for()
    files = [{"path": "/a.txt", "diskLifetime": "P1D"}, {"path": "/b.txt", "diskLifetime": "P7D"}]

    longest = client.post(f"{API}/stage", {"files": files}, format="json")
    default = staged_job(client, "/a.txt")

    assert Job.objects.get(uuid=longest.json()["requestId"]).lifetime == timedelta(days=7)
    assert default.lifetime == settings.STAGING["DEFAULT_LIFETIME"]


def test_a_disk_lifetime_beyond_the_maximum_is_shortened(client_for, archive_files, settings):
    settings.STAGING = {**settings.STAGING, "MAX_LIFETIME": timedelta(days=30)}
    archive_files({"a.txt": b"a"})
    assert staged_job(client_for(), "/a.txt", diskLifetime="P365D").lifetime == timedelta(days=30)


@pytest.mark.parametrize("lifetime", ["1 hour", "P1Y", "PT", "P", "PT0S", "", 3600, None])
def test_a_malformed_disk_lifetime_is_a_400_and_creates_nothing(
    client_for, archive_files, lifetime
):
    archive_files({"a.txt": b"a"})
    response = stage(client_for(), "/a.txt", diskLifetime=lifetime)
    assert_problem(response, 400, "diskLifetime")
    assert not Job.objects.exists()


def test_targeted_metadata_for_our_site_is_kept_and_other_sites_ignored(
    client_for, archive_files, settings
):
    settings.TAPE = {**settings.TAPE, "SITENAME": "OURS"}
    archive_files({"a.txt": b"a", "b.txt": b"b"})
    files = [
        {"path": "/a.txt", "targetedMetadata": {"OURS": {"priority": 5}, "THEIRS": {"x": 1}}},
        {"path": "/b.txt", "targetedMetadata": {"THEIRS": {"y": 2}}},
    ]
    response = client_for().post(f"{API}/stage", {"files": files}, format="json")

    job = Job.objects.get(uuid=response.json()["requestId"])
    assert job.parameters["tape"]["targetedMetadata"] == {"/a.txt": {"priority": 5}}


def test_unknown_fields_are_tolerated(client_for, archive_files):
    archive_files({"a.txt": b"a"})
    body = {"files": [{"path": "/a.txt", "colour": "blue"}], "priority": "high"}
    response = client_for().post(f"{API}/stage/", body, format="json")
    assert response.status_code == 201, response.content


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, ["files", "required"]),
        ({"files": []}, ["files"]),
        ({"files": "/a.txt"}, ["files"]),
        ({"files": [{"diskLifetime": "P1D"}]}, ["path", "required"]),
        ({"files": [{"path": 7}]}, ["path", "string"]),
        ({"files": [{"path": ""}]}, ["path"]),
        ({"files": [{"path": "/a.txt", "targetedMetadata": "fast"}]}, ["targetedMetadata"]),
        ({"paths": ["/a.txt"]}, ["files"]),
        (["/a.txt"], ["dictionary"]),
    ],
)
def test_malformed_bodies_are_a_400_and_create_nothing(client_for, archive_files, body, words):
    archive_files({"a.txt": b"a"})
    assert_problem(client_for().post(f"{API}/stage", body, format="json"), 400, *words)
    assert not Job.objects.exists()


@pytest.mark.parametrize("path", ["/../etc/passwd", "/primary/../../x", "/a/\x00b", "/", "//"])
def test_paths_that_could_leave_a_store_are_a_400_and_create_nothing(
    client_for, archive_files, path
):
    archive_files({"a.txt": b"a"})
    assert_problem(stage(client_for(), "/a.txt", path), 400)
    assert not Job.objects.exists()


def test_files_of_two_stores_in_one_request_are_a_400(tmp_path, client_for, archive_files):
    cold = second_store(tmp_path)
    archive_files({"a.txt": b"a"}, cold)
    archive_files({"b.txt": b"b"})
    assert_problem(stage(client_for(), "/cold/a.txt", "/b.txt"), 400, "one store")
    assert not Job.objects.exists()


def test_too_many_files_are_a_400(client_for, archive_files, settings):
    settings.STAGING = {**settings.STAGING, "MAX_FILES_PER_REQUEST": 2}
    archive_files({"a.txt": b"a"})
    assert_problem(stage(client_for(), "/a.txt", "/b", "/c"), 400, "At most 2")


def test_a_call_without_a_token_is_a_401_naming_the_bearer_scheme(archive_files):
    archive_files({"a.txt": b"a"})
    response = stage(APIClient(), "/a.txt")
    assert_problem(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_the_admin_role_may_not_stage(client_for, archive_files):
    archive_files({"a.txt": b"a"})
    assert_problem(stage(client_for(Role.ADMIN), "/a.txt"), 403)


def test_a_service_user_may_stage(client_for, archive_files):
    archive_files({"a.txt": b"a"})
    assert stage(client_for(Role.SERVICE_USER), "/a.txt").status_code == 201


@pytest.mark.parametrize("request_id", ["4b86e181-3a43-4c52-9d7e-3d5f7b0c1a2b", "not-a-uuid"])
def test_an_unknown_request_is_a_404(client_for, request_id):
    assert_problem(client_for().get(f"{API}/stage/{request_id}"), 404, request_id)


def test_another_users_request_is_a_404_but_a_data_admin_sees_it(client_for, archive_files):
    archive_files({"a.txt": b"a"})
    job = staged_job(client_for(Role.DATA_USER, username="alice"), "/a.txt")

    mallory = client_for(Role.DATA_USER, username="mallory").get(f"{API}/stage/{job.uuid}")
    admin = client_for(Role.DATA_ADMIN, username="root").get(f"{API}/stage/{job.uuid}")

    assert_problem(mallory, 404)
    assert admin.status_code == 200


def test_a_dts_request_is_not_a_tape_request(client_for, archive_files):
    (file,) = archive_files({"a.txt": b"a"})
    client = client_for()
    request_id = client.post("/dts/staging", {"ids": [file.id]}, format="json").json()
    assert_problem(client.get(f"{API}/stage/{request_id['request_id']}"), 404)
