"""A job's deadline: `deadline` on API v1's jobs (JSON body, or the query string of a streamed
request), `targetedMetadata.<sitename>.deadline` on the tape API, and a store's default for
requests that name none (the DTS never does). Whole seconds or an ISO 8601 duration; anything
else is a 400 that names the field and the accepted forms, and nothing is created."""

from datetime import timedelta

import pytest
from django.conf import settings

from staging.models import Job, Store
from staging.roles import Role
from tests.api import helpers, tape_helpers
from tests.api.test_jobs_submit_streamed import ndjson, post_ndjson

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/jobs/"
FORMS = "a positive whole number of seconds (3600) or an ISO 8601 duration (PT2H, P1D)"


def submit(client, **body):
    return client.post(JOBS, {"paths": ["a.txt"], **body}, format="json")


@pytest.mark.parametrize(
    ("deadline", "duration"),
    [
        (7200, timedelta(hours=2)),
        ("PT2H", timedelta(hours=2)),
        ("P1D", timedelta(days=1)),
        ("P1DT30M", timedelta(days=1, minutes=30)),
        ("PT90S", timedelta(seconds=90)),
        ("3600", timedelta(hours=1)),
    ],
)
def test_a_deadline_in_seconds_or_iso_8601_is_kept_from_the_jobs_creation(
    api_as, archive_files, deadline, duration
):
    archive_files({"a.txt": b"a"})
    client = api_as(Role.DATA_USER)

    response = submit(client, deadline=deadline)

    assert response.status_code == 202, response.content
    job = Job.objects.get(uuid=response.json()["jobId"])
    assert job.deadline_at == job.created_at + duration
    detail = client.get(f"{JOBS}{job.uuid}/").json()
    assert detail["deadline_at"] == job.deadline_at.isoformat().replace("+00:00", "Z")


def test_a_job_without_a_deadline_has_none(api_as, archive_files):
    archive_files({"a.txt": b"a"})
    client = api_as(Role.DATA_USER)

    response = submit(client)

    job = Job.objects.get(uuid=response.json()["jobId"])
    assert job.deadline_at is None
    assert client.get(f"{JOBS}{job.uuid}/").json()["deadline_at"] is None


@pytest.mark.parametrize(
    "deadline", [0, -5, "soon", "", "PT", "P", "P1Y", "P1M", "-PT1H", 2.5, True, None, [60]]
)
def test_a_bad_deadline_is_a_400_naming_the_field_and_the_forms(api_as, archive_files, deadline):
    archive_files({"a.txt": b"a"})

    response = submit(api_as(Role.DATA_USER), deadline=deadline)

    body = helpers.assert_problem(response, 400)
    assert "deadline" in body["detail"], body
    assert FORMS in str(body), body
    assert not Job.objects.exists()


@pytest.mark.parametrize("deadline", [366 * 86400 + 1, "P367D", "9" * 400, "P99999999999D"])
def test_a_deadline_of_more_than_a_year_is_a_400_saying_the_longest(
    api_as, archive_files, deadline
):
    archive_files({"a.txt": b"a"})

    response = submit(api_as(Role.DATA_USER), deadline=deadline)

    helpers.assert_problem(response, 400, "deadline", "at most 366 days")
    assert not Job.objects.exists()


def test_a_streamed_request_takes_its_deadline_from_the_query_string(api_as, archive_files):
    (entry,) = archive_files({"a.txt": b"a"})

    response = post_ndjson(api_as(Role.DATA_USER), ndjson(entry.id), "?deadline=PT30M")

    assert response.status_code == 202, response.content
    job = Job.objects.get(uuid=response.json()["jobId"])
    assert job.deadline_at == job.created_at + timedelta(minutes=30)


def test_a_bad_deadline_in_a_streamed_requests_query_is_a_400(api_as, archive_files):
    (entry,) = archive_files({"a.txt": b"a"})

    response = post_ndjson(api_as(Role.DATA_USER), ndjson(entry.id), "?deadline=tomorrow")

    helpers.assert_problem(response, 400)
    assert "deadline" in response.content.decode()
    assert not Job.objects.exists()


def test_a_request_without_a_deadline_gets_its_stores_default(api_as, archive_files, store):
    archive_files({"a.txt": b"a"})
    Store.objects.filter(pk=store.pk).update(default_deadline=timedelta(minutes=10))

    response = submit(api_as(Role.DATA_USER))

    job = Job.objects.get(uuid=response.json()["jobId"])
    assert job.deadline_at == job.created_at + timedelta(minutes=10)


def test_a_requests_own_deadline_replaces_its_stores_default(api_as, archive_files, store):
    archive_files({"a.txt": b"a"})
    Store.objects.filter(pk=store.pk).update(default_deadline=timedelta(minutes=10))

    response = submit(api_as(Role.DATA_USER), deadline="PT3H")

    job = Job.objects.get(uuid=response.json()["jobId"])
    assert job.deadline_at == job.created_at + timedelta(hours=3)


def test_a_dts_request_gets_its_stores_default_deadline(client_for, archive_files, store):
    (entry,) = archive_files({"a.txt": b"a"})
    Store.objects.filter(pk=store.pk).update(default_deadline=timedelta(hours=1))

    response = client_for(Role.SERVICE_USER).post(
        "/dts/staging", {"ids": [entry.id]}, format="json"
    )

    assert response.status_code == 201, response.content
    job = Job.objects.get(uuid=response.json()["request_id"])
    assert job.deadline_at == job.created_at + timedelta(hours=1)


def tape_deadline(value) -> dict:
    return {"targetedMetadata": {settings.TAPE["SITENAME"]: {"deadline": value}}}


def test_a_tape_request_takes_the_longest_deadline_its_files_ask_for(client_for, archive_files):
    archive_files({"a.txt": b"a", "b.txt": b"b", "c.txt": b"c"})
    site = settings.TAPE["SITENAME"]
    files = [
        {"path": "/a.txt", "targetedMetadata": {site: {"deadline": "PT1H"}}},
        {"path": "/b.txt", "targetedMetadata": {site: {"deadline": 10800}}},
        {"path": "/c.txt"},
    ]

    response = client_for(Role.DATA_USER).post(
        f"{tape_helpers.API}/stage", {"files": files}, format="json"
    )

    assert response.status_code == 201, response.content
    job = Job.objects.get(uuid=response.json()["requestId"])
    assert job.deadline_at == job.created_at + timedelta(hours=3)


def test_a_tape_request_in_ndjson_takes_its_deadline_too(client_for, archive_files):
    archive_files({"a.txt": b"a"})
    line = {"path": "/a.txt", **tape_deadline("PT20M")}

    response = client_for(Role.DATA_USER).post(
        f"{tape_helpers.API}/stage", ndjson(line), content_type="application/x-ndjson"
    )

    assert response.status_code == 201, response.content
    job = Job.objects.get(uuid=response.json()["requestId"])
    assert job.deadline_at == job.created_at + timedelta(minutes=20)


@pytest.mark.parametrize("deadline", [0, "later", "P1Y", True, 1.5])
def test_a_bad_tape_deadline_is_a_400_naming_it(client_for, archive_files, deadline):
    archive_files({"a.txt": b"a"})

    response = tape_helpers.stage(client_for(Role.DATA_USER), "/a.txt", **tape_deadline(deadline))

    assert response.status_code == 400, response.content
    text = response.content.decode()
    assert f"{settings.TAPE['SITENAME']}.deadline must be {FORMS}" in text, text
    assert not Job.objects.exists()
