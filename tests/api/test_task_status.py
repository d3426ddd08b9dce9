"""GET /api/v1/task_status/{id} and …/peek (seed 001): status, headers, results, ETag/304, the
role matrix, and how little each poll costs."""

import csv
import io
import json
import re
import uuid

import pytest
from django.db import connection
from django.db.models import Value
from django.db.models.functions import Concat
from django.test.utils import CaptureQueriesContext

from staging.api.job_output import StatusSerializer
from staging.api.task_status import status_body
from staging.models import Job, JobStatus
from staging.roles import Role
from tests.api.helpers import assert_problem, content_of, make_job
from tests.factories import StoreFactory, UserFactory

pytestmark = pytest.mark.django_db

F, R = JobStatus.FINISHED, JobStatus.RUNNING
PROGRESS_KEYS = {"files_total", "files_done", "files_failed", "bytes_total", "bytes_done"}


def peek(client, job, **headers):
    return client.get(f"/api/v1/task_status/{job.uuid}/peek", **headers)


def task_status(client, job, **headers):
    return client.get(f"/api/v1/task_status/{job.uuid}", **headers)


def test_peek_answers_the_status_and_progress_only(api_as):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=R, items={"a.txt": F, "b.txt": R}, files_done=1)

    response = peek(client, job)

    assert response.status_code == 200
    assert response.json() == {
        "status": "RUNNING",
        "progress": {
            "files_total": 2,
            "files_done": 1,
            "files_failed": 0,
            "bytes_total": 200,
            "bytes_done": 0,
        },
    }
    assert response["ETag"].startswith('W/"')
    assert response["Cache-Control"] == "private, no-cache"


def test_peek_answers_304_while_nothing_changed_and_200_once_it_did(api_as):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=R)
    etag = peek(client, job)["ETag"]

    unchanged = peek(client, job, HTTP_IF_NONE_MATCH=etag)
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged["ETag"] == etag

    Job.objects.filter(pk=job.pk).update(bytes_done=50)
    changed = peek(client, job, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200
    assert changed.json()["progress"]["bytes_done"] == 50
    assert changed["ETag"] != etag


@pytest.mark.parametrize("header", ['"other", {etag}', "{bare}", "*"])
def test_if_none_match_compares_weakly_and_takes_lists_and_star(api_as, header):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=R)
    etag = peek(client, job)["ETag"]
    sent = header.format(etag=etag, bare=etag.removeprefix("W/"))
    assert peek(client, job, HTTP_IF_NONE_MATCH=sent).status_code == 304


@pytest.mark.parametrize(
    "header",
    [
        ("HTTP_IF_MATCH", "{etag}"),
        ("HTTP_IF_MATCH", 'W/"other"'),
        ("HTTP_IF_UNMODIFIED_SINCE", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ("HTTP_IF_MODIFIED_SINCE", "Sun, 06 Nov 1994 08:49:37 GMT"),
    ],
)
def test_preconditions_other_than_if_none_match_are_ignored(api_as, header):
    # A status has no modification date and is never written through these calls: only
    # If-None-Match means anything to them, and the others must not turn a poll into a 412.
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=R)
    etag = peek(client, job)["ETag"]
    name, value = header
    response = peek(client, job, **{name: value.format(etag=etag)})
    assert response.status_code == 200
    assert response.json()["status"] == "RUNNING"


def test_a_stale_etag_gets_the_full_answer(api_as):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=R)
    assert peek(client, job, HTTP_IF_NONE_MATCH='W/"stale"').status_code == 200


def test_task_status_of_a_running_job_gives_location_and_retry_after(api_as):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=R)

    response = task_status(client, job)

    assert response.status_code == 200
    assert response.json()["status"] == "RUNNING"
    assert set(response.json()["progress"]) == PROGRESS_KEYS
    assert response["Location"] == f"http://testserver/api/v1/task_status/{job.uuid}"
    assert int(response["Retry-After"]) > 0
    again = task_status(client, job, HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304
    assert again["Location"] == response["Location"]
    assert again["Retry-After"] == response["Retry-After"]


def test_task_status_of_a_running_job_as_csv_is_one_status_row(api_as):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=JobStatus.NOT_STARTED)
    response = task_status(client, job, HTTP_ACCEPT="text/csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    (row,) = csv.DictReader(io.StringIO(response.content.decode()))
    assert (row["status"], row["progress.files_total"]) == ("NOT_STARTED", "1")


def test_task_status_of_an_ended_job_gives_its_results_and_their_uri(api_as):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=F, items={"a.txt": F, "b.txt": F})

    response = task_status(client, job)

    assert response.status_code == 200
    results_uri = f"http://testserver/api/v1/jobs/{job.uuid}/result"
    assert response["Location"] == results_uri
    assert response["Content-Location"] == results_uri
    assert "Retry-After" not in response
    body = json.loads(content_of(response))
    assert (body["jobId"], body["status"]) == (str(job.uuid), "FINISHED")
    assert [f["path"] for f in body["files"]] == ["a.txt", "b.txt"]


def test_task_status_of_an_ended_job_gives_csv_rows_on_accept_text_csv(api_as):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=F, items={"a.txt": F, "b.txt": F})

    as_csv = task_status(client, job, HTTP_ACCEPT="text/csv")
    as_json = task_status(client, job)

    assert as_csv["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(content_of(as_csv).decode())))
    assert [(r["path"], r["status"]) for r in rows] == [
        ("a.txt", "FINISHED"),
        ("b.txt", "FINISHED"),
    ]
    # One ETag per representation: a cached JSON answer never validates a CSV request.
    assert as_csv["ETag"] != as_json["ETag"]
    assert task_status(client, job, HTTP_ACCEPT="text/csv", HTTP_IF_NONE_MATCH=as_json["ETag"])[
        "Content-Type"
    ].startswith("text/csv")
    unchanged = task_status(client, job, HTTP_ACCEPT="text/csv", HTTP_IF_NONE_MATCH=as_csv["ETag"])
    assert unchanged.status_code == 304
    assert unchanged["Location"] == as_csv["Location"]


@pytest.mark.parametrize("role", [Role.DATA_ADMIN, Role.DATA_USER, Role.COLLECTION_ADMIN])
def test_data_admin_data_user_and_collection_admin_may_read_task_status(api_as, role):
    client = api_as(role)
    job = make_job(owner=client.user, status=R)
    assert peek(client, job).status_code == 200
    assert task_status(client, job).status_code == 200


@pytest.mark.parametrize("role", [Role.ADMIN, Role.SERVICE_USER])
def test_admin_and_service_user_get_403(api_as, role):
    client = api_as(role)
    job = make_job(owner=client.user, status=R)
    assert_problem(peek(client, job), 403, "role")
    assert_problem(task_status(client, job), 403, "role")


def test_another_users_job_is_404_never_403(api_as):
    job = make_job(owner=UserFactory(username="someone-else"), status=R)
    for role in (Role.DATA_USER, Role.COLLECTION_ADMIN):
        client = api_as(role)
        assert_problem(peek(client, job), 404, "no job")
        assert_problem(task_status(client, job), 404, "no job")
    assert peek(api_as(Role.DATA_ADMIN), job).status_code == 200


def test_a_collection_admin_reads_the_status_of_jobs_on_stores_they_administer(api_as):
    client = api_as(Role.COLLECTION_ADMIN)
    store = StoreFactory(slug="theirs")
    store.administrators.add(client.user)
    job = make_job(owner=UserFactory(username="u1"), store=store, status=R)
    assert peek(client, job).json()["status"] == "RUNNING"


@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "nope"])
def test_an_unknown_job_is_404(api_as, job_id):
    client = api_as(Role.DATA_USER)
    assert_problem(client.get(f"/api/v1/task_status/{job_id}/peek"), 404, "no job")
    assert_problem(client.get(f"/api/v1/task_status/{job_id}"), 404, "no job")


def test_without_a_token_it_is_401_with_a_bearer_challenge(client):
    response = client.get(f"/api/v1/task_status/{uuid.uuid4()}/peek")
    assert_problem(response, 401)
    assert response["WWW-Authenticate"] == "Bearer"


# --- cost of a poll -------------------------------------------------------------------------
# Per warm call (the token, its user and roles remembered by the process): one lookup of the
# job by its unique id reading only the status columns.
STATUS_CALL_QUERIES = 1


def job_queries(captured) -> list[str]:
    return [q["sql"] for q in captured if '"staging_job"' in q["sql"]]


def assert_single_narrow_lookup(sql: str, *columns: str) -> None:
    assert '"staging_job"."uuid" =' in sql
    selected = sql.split(" FROM ")[0]
    # The error column only as a failed job's own error (CASE WHEN status IN (failed…)).
    guarded_error = re.search(r"CASE WHEN \(?\"staging_job\"\.\"status\" IN .*? END", selected)
    if guarded_error:
        assert "'FAILED'" in guarded_error[0]
        selected = selected.replace(guarded_error[0], "")
    for column in columns:
        assert f'"staging_job"."{column}"' in selected
    for unneeded in ("parameters", "result", "error", "owner_id"):
        assert f'"staging_job"."{unneeded}"' not in selected
    assert "JOIN" not in sql and "ORDER BY" not in sql


@pytest.mark.parametrize("role", [Role.DATA_USER, Role.COLLECTION_ADMIN, Role.DATA_ADMIN])
@pytest.mark.parametrize(
    "url",
    ["/api/v1/task_status/{id}/peek", "/api/v1/task_status/{id}", "/dts/staging?id={id}"],
)
def test_a_status_poll_is_one_narrow_indexed_lookup_of_the_job(
    api_as, django_assert_max_num_queries, role, url
):
    client = api_as(role)
    store = StoreFactory(slug="primary")
    store.administrators.add(client.user)
    job = make_job(owner=client.user, store=store, status=R)
    client.get(url.format(id=job.uuid))  # warm up: nothing cached beyond the request

    with (
        django_assert_max_num_queries(STATUS_CALL_QUERIES),
        CaptureQueriesContext(connection) as captured,
    ):
        response = client.get(url.format(id=job.uuid))

    assert response.status_code == 200
    (lookup,) = job_queries(captured.captured_queries)
    assert_single_narrow_lookup(lookup, "status")


@pytest.mark.parametrize("url", ["/api/v1/task_status/{id}/peek", "/dts/staging?id={id}"])
def test_a_failed_jobs_poll_says_why_for_one_more_query(api_as, django_assert_max_num_queries, url):
    client = api_as(Role.DATA_USER)
    job = make_job(
        owner=client.user,
        status=JobStatus.FAILED,
        items={"run2/a.txt": JobStatus.FAILED, "run2/b.txt": JobStatus.FAILED},
    )
    job.items.update(error=Concat(Value("source file not found: "), "path"))
    client.get(url.format(id=job.uuid))  # warm up: nothing cached beyond the request

    with django_assert_max_num_queries(STATUS_CALL_QUERIES + 1):
        response = client.get(url.format(id=job.uuid))

    assert response.json()["error"] == (
        "2 files failed: source file not found (2: run2/a.txt, run2/b.txt)"
    )


@pytest.mark.parametrize("url", ["/api/v1/task_status/{id}/peek", "/dts/staging?id={id}"])
def test_a_failed_jobs_own_error_comes_with_the_status_lookup(
    api_as, django_assert_max_num_queries, url
):
    client = api_as(Role.DATA_USER)
    job = make_job(
        owner=client.user,
        status=JobStatus.FAILED,
        items={"a.txt": JobStatus.CANCELLED},
        error="the store's archive is not mounted",
    )
    client.get(url.format(id=job.uuid))  # warm up: nothing cached beyond the request

    with django_assert_max_num_queries(STATUS_CALL_QUERIES):
        response = client.get(url.format(id=job.uuid))

    assert response.json()["error"] == "the store's archive is not mounted"


@pytest.mark.parametrize("url", ["/api/v1/task_status/{id}/peek", "/dts/staging?id={id}"])
def test_a_failed_job_without_failed_items_or_error_costs_one_more_query(
    api_as, django_assert_max_num_queries, url
):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=JobStatus.FAILED, items={"a.txt": R})
    client.get(url.format(id=job.uuid))  # warm up: nothing cached beyond the request

    with django_assert_max_num_queries(STATUS_CALL_QUERIES + 1):
        response = client.get(url.format(id=job.uuid))

    assert response.status_code == 200
    assert "error" not in response.json()


def test_a_304_costs_no_more_than_a_200(api_as, django_assert_max_num_queries):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=R)
    etag = peek(client, job)["ETag"]
    with django_assert_max_num_queries(STATUS_CALL_QUERIES):
        assert peek(client, job, HTTP_IF_NONE_MATCH=etag).status_code == 304


@pytest.mark.parametrize("status", JobStatus.values)
@pytest.mark.parametrize("error", ["", "2 files failed: source file not found (2: a, b)"])
def test_the_status_body_is_what_the_status_serializer_makes(status, error):
    row = {
        "id": 7,
        "status": status,
        "files_total": 3,
        "files_done": 2,
        "files_failed": 1,
        "bytes_total": 300,
        "bytes_done": 200,
        "updated_at": None,
        "own_error": None,
    }
    expected = StatusSerializer({**row, "error": error} if error else row).data
    assert json.dumps(status_body(row, error)) == json.dumps(expected)
