"""Bad input of every kind the review found is a 4xx problem naming what is wrong, never a 500:
huge durations, tampered cursors, deeply nested JSON, overlong tape paths, NUL bytes."""

import json

import pytest

from staging.models import Job, JobStatus
from staging.roles import Role
from tests.api.helpers import assert_problem, make_job

pytestmark = pytest.mark.django_db

HUGE_DURATIONS = ["P99999999999D", "P" + "9" * 400 + "D", "PT" + "9" * 400 + "S"]


@pytest.fixture
def reads(archive_files):
    return archive_files({"run/reads.fastq": b"@r1\nACGT\n"})[0]


@pytest.mark.parametrize("lifetime", HUGE_DURATIONS)
def test_a_job_lifetime_too_large_to_represent_is_a_400(api_as, reads, lifetime):
    response = api_as(Role.DATA_USER).post(
        "/api/v1/jobs/", {"ids": [reads.id], "lifetime": lifetime}, format="json"
    )

    assert_problem(response, 400, "lifetime")
    assert not Job.objects.exists()


def test_a_job_lifetime_given_as_a_400_digit_number_is_a_400(api_as, reads):
    huge = "9" * 400
    body = f'{{"ids": ["{reads.id}"], "lifetime": {huge}}}'

    response = api_as(Role.DATA_USER).post("/api/v1/jobs/", body, content_type="application/json")

    assert response.status_code == 400
    assert not Job.objects.exists()


@pytest.mark.parametrize("lifetime", HUGE_DURATIONS)
def test_a_catalogue_task_lifetime_too_large_to_represent_is_a_400(api_as, reads, lifetime):
    response = api_as(Role.DATA_USER).post(
        "/api/v1/tasks/stage/", {"ids": [reads.id], "lifetime": lifetime}, format="json"
    )

    assert_problem(response, 400, "lifetime")
    assert not Job.objects.exists()


@pytest.mark.parametrize("lifetime", HUGE_DURATIONS)
def test_a_tape_disk_lifetime_too_large_to_represent_is_a_400(api_as, reads, lifetime):
    response = api_as(Role.DATA_USER).post(
        "/tape/api/v1/stage",
        {"files": [{"path": "/run/reads.fastq", "diskLifetime": lifetime}]},
        format="json",
    )

    assert_problem(response, 400, "diskLifetime")
    assert not Job.objects.exists()


@pytest.mark.parametrize("cursor", ["cD14", "cD1hYmM=", "not base64!", "cD0="])
def test_a_tampered_jobs_cursor_is_a_400(api_as, cursor):
    client = api_as(Role.DATA_USER)
    make_job(owner=client.user, status=JobStatus.RUNNING)

    response = client.get(f"/api/v1/jobs/?cursor={cursor}")

    assert_problem(response, 400, "cursor")


@pytest.mark.parametrize("cursor", ["cD1hYmM=", "cD14", "cD05OTk5OTk5OTk5OTk5OTk5OTk5OTk5OQ=="])
def test_a_tampered_items_cursor_is_a_400(api_as, cursor):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=JobStatus.RUNNING)

    response = client.get(f"/api/v1/jobs/{job.uuid}/items/?cursor={cursor}")

    assert_problem(response, 400, "cursor")


@pytest.mark.parametrize("url", ["/api/v1/jobs/", "/dts/staging", "/tape/api/v1/stage"])
def test_a_json_body_nested_100000_deep_is_a_400(api_as, store, url):
    body = "[" * 100_000 + "]" * 100_000

    response = api_as(Role.DATA_USER).post(url, body, content_type="application/json")

    assert_problem(response, 400, "JSON")
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/run/" + "a" * 256, ("255",)),
        ("/" + "abc/" * 300 + "x", ("1024",)),
    ],
)
def test_an_overlong_tape_path_is_a_400(api_as, store, path, words):
    response = api_as(Role.DATA_USER).post(
        "/tape/api/v1/stage", {"files": [{"path": path}]}, format="json"
    )

    assert_problem(response, 400, *words)
    assert not Job.objects.exists()


@pytest.mark.parametrize("url", ["/api/v1/tape/archiveinfo", "/tape/api/v1/archiveinfo"][1:])
def test_an_overlong_archiveinfo_path_is_answered_not_a_500(api_as, store, url):
    response = api_as(Role.DATA_USER).post(
        url, {"paths": ["/run/" + "a" * 256, "/" + "abc/" * 300]}, format="json"
    )

    assert response.status_code < 500


@pytest.mark.parametrize(
    "url",
    [
        "/durastore/task?storeID=a%00b",
        "/api/v1/tasks/?storeID=a%00b",
        "/api/v1/files/?storeID=a%00b",
        "/api/v1/files/?prefix=a%00b",
    ],
)
def test_a_nul_byte_in_a_query_parameter_is_a_4xx(api_as, store, url):
    response = api_as(Role.DATA_USER).get(url)

    assert 400 <= response.status_code < 500, response.content


def test_a_nul_byte_in_a_job_store_is_a_4xx(api_as, reads):
    response = api_as(Role.DATA_USER).post(
        "/api/v1/jobs/", {"ids": [reads.id], "store": "a\x00b"}, format="json"
    )

    assert 400 <= response.status_code < 500, response.content


def test_a_nul_byte_in_dts_ids_is_a_400(api_as, store):
    response = api_as(Role.SERVICE_USER).post(
        "/dts/staging", json.dumps({"ids": ["abc\x00def"]}), content_type="application/json"
    )

    assert_problem(response, 400, "ids")
    assert not Job.objects.exists()


def test_a_nul_byte_in_dts_resource_ids_is_a_400(api_as, store):
    response = api_as(Role.SERVICE_USER).get("/dts/resources?ids=abc%00def")

    assert 400 <= response.status_code < 500, response.content


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/api/v1/jobs/", {"ids": ["x"], "parameters": {"note": "a\x00b"}}),
        ("/tape/api/v1/stage", {"files": [{"path": "/a", "targetedMetadata": {"a\x00": {}}}]}),
    ],
)
def test_a_nul_character_anywhere_in_a_json_body_is_a_400(api_as, store, url, body):
    response = api_as(Role.DATA_USER).post(url, json.dumps(body), content_type="application/json")

    assert_problem(response, 400, "NUL")
    assert not Job.objects.exists()


def test_a_durastore_body_nested_100000_deep_is_a_400(api_as, store):
    response = api_as(Role.DATA_USER).post(
        "/durastore/task/stage", "[" * 100_000 + "]" * 100_000, content_type="text/plain"
    )

    assert response.status_code == 400
    assert not Job.objects.exists()
