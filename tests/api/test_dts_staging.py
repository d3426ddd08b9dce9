"""The DTS provider contract: POST and GET /dts/staging (seed 000, API.md)."""

import uuid

import pytest

from staging.errors import LISTED_AT_MOST
from staging.models import Item, Job, JobStatus, SubJob
from staging.roles import Role
from tests.api.helpers import assert_problem
from tests.factories import FileFactory, JobFactory, UserFactory

pytestmark = pytest.mark.django_db


def post_ids(client, body, **kwargs):
    return client.post("/dts/staging", body, format="json", **kwargs)


def test_it_creates_a_staging_request_and_answers_201_with_its_uuid(client_for, archive_files):
    files = archive_files({"a.txt": b"alpha", "sub/b.bin": b"beta" * 10})
    response = post_ids(client_for(Role.DATA_USER), {"ids": [f.id for f in files]})

    assert response.status_code == 201
    request_id = uuid.UUID(response.json()["request_id"])
    job = Job.objects.get(uuid=request_id)
    assert job.status == JobStatus.NOT_STARTED
    assert job.source == "dts"
    assert (job.files_total, job.bytes_total) == (2, 45)
    assert sorted(Item.objects.filter(job=job).values_list("path", flat=True)) == [
        "a.txt",
        "sub/b.bin",
    ]
    assert SubJob.objects.filter(job=job).count() == 1


def test_repeated_ids_are_staged_once(client_for, archive_files):
    (file,) = archive_files({"a.txt": b"alpha"})
    response = post_ids(client_for(), {"ids": [file.id, file.id]})
    assert response.status_code == 201
    assert Item.objects.filter(job__uuid=response.json()["request_id"]).count() == 1


def test_large_requests_are_split_into_subjobs(client_for, archive_files, settings):
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 3}
    files = archive_files({f"f{n}.txt": b"x" for n in range(7)})
    response = post_ids(client_for(), {"ids": [f.id for f in files]})
    job = Job.objects.get(uuid=response.json()["request_id"])
    assert list(job.subjobs.order_by("sequence").values_list("files_total", flat=True)) == [
        3,
        3,
        1,
    ]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, ["ids", "required"]),
        ({"ids": []}, ["ids"]),
        ({"ids": "abc"}, ["ids"]),
        ({"ids": [1, 2]}, ["string"]),
        ({"ids": [""]}, ["ids"]),
        ({"ids": [None]}, ["ids"]),
        ([1, 2, 3], ["dictionary"]),
    ],
)
def test_it_rejects_malformed_bodies_with_400_and_creates_nothing(client_for, body, words):
    response = post_ids(client_for(), body)
    assert_problem(response, 400, *words)
    assert not Job.objects.exists()


def test_it_rejects_a_body_that_is_not_json(client_for):
    response = client_for().post("/dts/staging", "{not json", content_type="application/json")
    assert_problem(response, 400, "JSON")
    assert not Job.objects.exists()


def test_it_rejects_more_ids_than_the_limit(client_for, settings):
    settings.STAGING = {**settings.STAGING, "MAX_FILES_PER_REQUEST": 2}
    response = post_ids(client_for(), {"ids": ["a", "b", "c"]})
    assert_problem(response, 400, "At most 2")


def test_unknown_ids_answer_404_naming_each_of_them(client_for, archive_files):
    (known,) = archive_files({"a.txt": b"alpha"})
    response = post_ids(client_for(), {"ids": [known.id, "nope-1", "nope-2"]})
    assert_problem(response, 404, "nope-1", "nope-2")
    assert response.json()["unknown_ids"] == ["nope-1", "nope-2"]
    assert response.json()["unknown_ids_count"] == 2
    assert not Job.objects.exists()


def test_ten_thousand_unknown_ids_are_listed_only_in_part_with_their_count(client_for, store):
    ids = [f"nope-{n:05d}" for n in range(10_000)]

    response = post_ids(client_for(), {"ids": ids})

    assert_problem(response, 404, "10000 of 10000 ids are unknown", "nope-00000", "9980 more")
    body = response.json()
    assert (body["unknown_ids"], body["unknown_ids_count"]) == (ids[:LISTED_AT_MOST], 10_000)
    assert len(response.content) < 4_000


def test_files_gone_from_the_archive_count_as_unknown(client_for):
    gone = FileFactory(present=False)
    response = post_ids(client_for(), {"ids": [gone.id]})
    assert_problem(response, 404, gone.id)


def test_without_a_token_it_answers_401_with_a_bearer_challenge(client):
    response = client.post("/dts/staging", {"ids": ["a"]}, content_type="application/json")
    assert_problem(response, 401, "credentials")
    assert response["WWW-Authenticate"] == "Bearer"
    assert client.get(f"/dts/staging?id={uuid.uuid4()}").status_code == 401


def test_a_wrong_token_answers_401(client):
    response = client.get(f"/dts/staging?id={uuid.uuid4()}", HTTP_AUTHORIZATION="Bearer nonsense")
    assert_problem(response, 401, "token")


def test_the_admin_role_may_not_stage(client_for, archive_files):
    (file,) = archive_files({"a.txt": b"alpha"})
    response = post_ids(client_for(Role.ADMIN), {"ids": [file.id]})
    assert_problem(response, 403, "role")


@pytest.mark.parametrize(
    ("status", "dts_word"),
    [
        (JobStatus.NOT_STARTED, "staging"),
        (JobStatus.RUNNING, "staging"),
        (JobStatus.CANCELLING, "staging"),
        (JobStatus.FINISHED, "ready"),
        (JobStatus.PARTIALLY_FAILED, "failed"),
        (JobStatus.FAILED, "failed"),
        (JobStatus.CANCELLED, "cancelled"),
    ],
)
def test_status_maps_every_job_state_to_a_dts_word(client_for, status, dts_word):
    client = client_for(Role.DATA_USER, username="owner")
    job = JobFactory(owner=UserFactory(username="owner"), status=status)
    response = client.get(f"/dts/staging?id={job.uuid}")
    assert response.status_code == 200
    assert response.json() == {"status": dts_word}


@pytest.mark.parametrize("query", ["", "?id=", "?id=not-a-uuid", "?id=1234"])
def test_status_without_a_valid_uuid_is_400(client_for, query):
    assert_problem(client_for().get(f"/dts/staging{query}"), 400, "id")


def test_status_of_an_unknown_request_is_404(client_for):
    assert_problem(client_for().get(f"/dts/staging?id={uuid.uuid4()}"), 404, "no staging request")


def test_another_users_request_is_404_but_a_data_admin_sees_it(client_for):
    job = JobFactory(owner=UserFactory(username="someone-else"), status=JobStatus.FINISHED)
    assert client_for(Role.DATA_USER).get(f"/dts/staging?id={job.uuid}").status_code == 404
    response = client_for(Role.DATA_ADMIN).get(f"/dts/staging?id={job.uuid}")
    assert response.json() == {"status": "ready"}


def test_status_carries_an_etag_and_answers_304_while_the_word_holds(client_for):
    client = client_for(Role.SERVICE_USER, username="dts")
    job = JobFactory(owner=UserFactory(username="dts"), status=JobStatus.RUNNING)
    first = client.get(f"/dts/staging?id={job.uuid}")
    assert first["Cache-Control"] == "private, no-cache"

    unchanged = client.get(f"/dts/staging?id={job.uuid}", HTTP_IF_NONE_MATCH=first["ETag"])
    assert (unchanged.status_code, unchanged.content) == (304, b"")

    # Progress inside "staging" changes nothing the DTS sees; "ready" does.
    Job.objects.filter(pk=job.pk).update(bytes_done=10)
    assert (
        client.get(f"/dts/staging?id={job.uuid}", HTTP_IF_NONE_MATCH=first["ETag"]).status_code
        == 304
    )
    Job.objects.filter(pk=job.pk).update(status=JobStatus.FINISHED)
    ready = client.get(f"/dts/staging?id={job.uuid}", HTTP_IF_NONE_MATCH=first["ETag"])
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert ready["ETag"] != first["ETag"]


def test_status_ignores_if_match_and_if_unmodified_since(client_for):
    client = client_for(Role.SERVICE_USER, username="dts")
    job = JobFactory(owner=UserFactory(username="dts"), status=JobStatus.RUNNING)
    etag = client.get(f"/dts/staging?id={job.uuid}")["ETag"]
    for header in (
        {"HTTP_IF_MATCH": etag},
        {"HTTP_IF_UNMODIFIED_SINCE": "Sun, 06 Nov 1994 08:49:37 GMT"},
    ):
        response = client.get(f"/dts/staging?id={job.uuid}", **header)
        assert (response.status_code, response.json()) == (200, {"status": "staging"})


def test_a_warm_status_poll_costs_one_query(client_for, django_assert_max_num_queries):
    client = client_for(Role.SERVICE_USER, username="dts")
    job = JobFactory(owner=UserFactory(username="dts"), status=JobStatus.RUNNING)
    # The first request reads the token with its user and roles, and the account's limits;
    # the process and the cache then keep them a while.
    client.get(f"/dts/staging?id={job.uuid}")
    with django_assert_max_num_queries(1):
        assert client.get(f"/dts/staging?id={job.uuid}").status_code == 200
