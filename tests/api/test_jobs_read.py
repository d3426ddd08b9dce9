"""GET /api/v1/jobs/ (filters, cursor pages), …/{id}/ (detail), …/items/, …/result."""

import csv
import io
import json
import uuid
from datetime import timedelta

import pytest
from django.http import StreamingHttpResponse
from django.utils import timezone

from staging.models import Item, Job, JobStatus
from staging.roles import Role
from tests.api.helpers import assert_problem, content_of, make_job
from tests.factories import StoreFactory, SubJobFactory, UserFactory

pytestmark = pytest.mark.django_db

F, X, R = JobStatus.FINISHED, JobStatus.FAILED, JobStatus.RUNNING


def job_ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["jobId"] for row in response.json()["results"]]


def test_a_data_user_lists_only_their_own_jobs_newest_first(api_as):
    client = api_as(Role.DATA_USER)
    older = make_job(owner=client.user)
    newer = make_job(owner=client.user)
    Job.objects.filter(pk=older.pk).update(created_at=timezone.now() - timedelta(hours=1))
    make_job(owner=UserFactory(username="someone-else"))

    assert job_ids(client.get("/api/v1/jobs/")) == [str(newer.uuid), str(older.uuid)]


def test_a_collection_admin_lists_their_own_and_their_stores_jobs(api_as):
    client = api_as(Role.COLLECTION_ADMIN)
    theirs = StoreFactory(slug="theirs")
    theirs.administrators.add(client.user)
    other_admin = UserFactory(username="other-admin")
    theirs.administrators.add(other_admin)  # several administrators: no job twice
    elsewhere = StoreFactory(slug="elsewhere")
    own = make_job(owner=client.user, store=elsewhere)
    on_their_store = make_job(owner=UserFactory(username="u1"), store=theirs)
    make_job(owner=UserFactory(username="u2"), store=elsewhere)

    assert sorted(job_ids(client.get("/api/v1/jobs/"))) == sorted(
        [str(own.uuid), str(on_their_store.uuid)]
    )


def test_a_data_user_who_is_a_store_administrator_still_sees_only_own_jobs(api_as):
    client = api_as(Role.DATA_USER)
    store = StoreFactory(slug="theirs")
    store.administrators.add(client.user)
    make_job(owner=UserFactory(username="u1"), store=store)
    assert job_ids(client.get("/api/v1/jobs/")) == []


def test_a_data_admin_lists_every_job(api_as):
    for name in ("u1", "u2", "u3"):
        make_job(owner=UserFactory(username=name))
    assert len(job_ids(api_as(Role.DATA_ADMIN).get("/api/v1/jobs/"))) == 3


def test_jobs_can_be_filtered_by_status_task_store_and_creation_time(api_as):
    client = api_as(Role.DATA_USER)
    tape = StoreFactory(slug="tape")
    finished = make_job(owner=client.user, status=F)
    running = make_job(owner=client.user, status=R, store=tape)
    old = make_job(owner=client.user, status=R, task="scan")
    Job.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    since = (timezone.now() - timedelta(days=1)).isoformat()

    assert job_ids(client.get("/api/v1/jobs/", {"status": "FINISHED"})) == [str(finished.uuid)]
    assert job_ids(client.get("/api/v1/jobs/", {"task": "scan"})) == [str(old.uuid)]
    assert job_ids(client.get("/api/v1/jobs/", {"store": "tape"})) == [str(running.uuid)]
    recent = job_ids(client.get("/api/v1/jobs/", {"status": "RUNNING", "created_after": since}))
    assert recent == [str(running.uuid)]
    assert job_ids(client.get("/api/v1/jobs/", {"created_before": since})) == [str(old.uuid)]


@pytest.mark.parametrize(
    ("query", "field"),
    [({"status": "DONE"}, "status"), ({"created_after": "yesterday"}, "created_after")],
)
def test_malformed_filters_are_400(api_as, query, field):
    response = api_as(Role.DATA_USER).get("/api/v1/jobs/", query)
    assert assert_problem(response, 400)["field"] == field


def test_filtering_on_an_unknown_store_is_404(api_as):
    assert_problem(api_as(Role.DATA_USER).get("/api/v1/jobs/?store=nope"), 404, "nope")


def test_the_job_list_pages_with_a_cursor(api_as):
    client = api_as(Role.DATA_USER)
    made = [make_job(owner=client.user) for _ in range(5)]
    for age, job in enumerate(made):
        Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(minutes=age))

    page = client.get("/api/v1/jobs/", {"page_size": 2}).json()
    second = client.get(page["next"]).json()
    third = client.get(second["next"]).json()

    seen = [row["jobId"] for p in (page, second, third) for row in p["results"]]
    assert seen == [str(j.uuid) for j in made]
    assert third["next"] is None
    assert_problem(client.get("/api/v1/jobs/?cursor=garbage"), 400, "cursor")


def test_the_detail_shows_progress_outcome_and_subjobs_by_status(api_as):
    client = api_as(Role.DATA_USER)
    job = make_job(
        owner=client.user,
        status=R,
        items={"a.txt": F, "b.txt": R},
        subjob_status=F,
        files_done=1,
        bytes_done=150,
    )
    SubJobFactory(job=job, sequence=2, status=R, bytes_per_second=30.0)
    SubJobFactory(job=job, sequence=3, status=R, bytes_per_second=20.0)

    response = client.get(f"/api/v1/jobs/{job.uuid}/")

    assert response.status_code == 200
    body = response.json()
    base = f"http://testserver/api/v1/jobs/{job.uuid}"
    assert body["jobId"] == str(job.uuid)
    assert (body["status"], body["task"], body["store"]) == ("RUNNING", "stage", "primary")
    assert body["owner"] == client.user.username
    assert body["progress"] == {
        "files_total": 2,
        "files_done": 1,
        "files_failed": 0,
        "bytes_total": 200,
        "bytes_done": 150,
        "bytes_per_second": 50.0,
        "eta_seconds": 1.0,
    }
    assert body["subjobs"] == {"total": 3, "by_status": {"FINISHED": 1, "RUNNING": 2}}
    assert body["lifetime"] == "P14D"
    assert body["statusuri"] == f"http://testserver/api/v1/task_status/{job.uuid}"
    assert (body["resultsuri"], body["itemsuri"], body["subjobsuri"]) == (
        f"{base}/result",
        f"{base}/items/",
        f"{base}/subjobs/",
    )


@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "not-a-uuid", "1"])
def test_an_unknown_job_is_404(api_as, job_id):
    assert_problem(api_as(Role.DATA_USER).get(f"/api/v1/jobs/{job_id}/"), 404, "no job")


def test_another_users_job_is_404_for_a_data_user_and_visible_to_a_data_admin(api_as):
    job = make_job(owner=UserFactory(username="someone-else"))
    assert_problem(api_as(Role.DATA_USER).get(f"/api/v1/jobs/{job.uuid}/"), 404)
    assert api_as(Role.DATA_ADMIN).get(f"/api/v1/jobs/{job.uuid}/").status_code == 200


def test_a_collection_admin_sees_jobs_of_stores_they_administer_only(api_as):
    client = api_as(Role.COLLECTION_ADMIN)
    theirs, other = StoreFactory(slug="theirs"), StoreFactory(slug="other")
    theirs.administrators.add(client.user)
    visible = make_job(owner=UserFactory(username="u1"), store=theirs)
    hidden = make_job(owner=UserFactory(username="u2"), store=other)
    assert client.get(f"/api/v1/jobs/{visible.uuid}/").status_code == 200
    assert_problem(client.get(f"/api/v1/jobs/{hidden.uuid}/"), 404)


def test_items_show_each_files_state_filterable_and_paginated(api_as):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=R, items={"a.txt": F, "b.txt": X, "c.txt": R})
    Item.objects.filter(job=job, path="b.txt").update(error="source file not found: b.txt")

    everything = client.get(f"/api/v1/jobs/{job.uuid}/items/").json()["results"]
    assert [(i["path"], i["status"], i["subjob"]) for i in everything] == [
        ("a.txt", "FINISHED", 1),
        ("b.txt", "FAILED", 1),
        ("c.txt", "RUNNING", 1),
    ]
    failed = client.get(f"/api/v1/jobs/{job.uuid}/items/", {"status": "FAILED"}).json()
    assert [(i["path"], i["error"]) for i in failed["results"]] == [
        ("b.txt", "source file not found: b.txt")
    ]
    page = client.get(f"/api/v1/jobs/{job.uuid}/items/", {"page_size": 2}).json()
    assert [i["path"] for i in page["results"]] == ["a.txt", "b.txt"]
    assert [i["path"] for i in client.get(page["next"]).json()["results"]] == ["c.txt"]
    assert client.get(f"/api/v1/jobs/{job.uuid}/items/", {"subjob": 2}).json()["results"] == []


def test_items_of_another_users_job_are_404(api_as):
    job = make_job(owner=UserFactory(username="someone-else"))
    assert_problem(api_as(Role.DATA_USER).get(f"/api/v1/jobs/{job.uuid}/items/"), 404)


def test_the_result_of_a_running_job_is_409_with_retry_after(api_as):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=R)
    response = client.get(f"/api/v1/jobs/{job.uuid}/result")
    assert_problem(response, 409, "RUNNING")
    assert int(response["Retry-After"]) > 0


def test_the_result_is_json_by_default(api_as):
    client = api_as(Role.DATA_USER)
    job = make_job(
        owner=client.user,
        status=JobStatus.PARTIALLY_FAILED,
        items={"a.txt": F, "b.txt": X},
        result={"files_finished": 1, "files_failed": 1, "files_cancelled": 0},
    )
    Item.objects.filter(job=job, path="b.txt").update(error="permission denied: b.txt")

    response = client.get(f"/api/v1/jobs/{job.uuid}/result")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = json.loads(content_of(response))
    assert (body["jobId"], body["status"], body["task"]) == (
        str(job.uuid),
        "PARTIALLY_FAILED",
        "stage",
    )
    assert body["summary"] == {"files_finished": 1, "files_failed": 1, "files_cancelled": 0}
    assert [(f["path"], f["status"], f["error"]) for f in body["files"]] == [
        ("a.txt", "FINISHED", ""),
        ("b.txt", "FAILED", "permission denied: b.txt"),
    ]
    assert set(body["files"][0]) == {
        "path",
        "file_id",
        "size",
        "status",
        "bytes_done",
        "attempts",
        "error",
        "finished_at",
        "queued_at",
        "started_at",
        "pinned_until",
        "released_at",
        "tape_vid",
        "tape_position",
    }


def test_the_result_is_csv_on_accept_text_csv(api_as):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=F, items={"a.txt": F, "dir/b,c.txt": F})

    response = client.get(f"/api/v1/jobs/{job.uuid}/result", HTTP_ACCEPT="text/csv")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(content_of(response).decode())))
    assert [(r["path"], r["status"], r["size"]) for r in rows] == [
        ("a.txt", "FINISHED", "100"),
        ("dir/b,c.txt", "FINISHED", "100"),
    ]


def test_a_large_result_is_streamed_whole(api_as):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=F, items={})
    subjob = job.subjobs.get()
    Item.objects.bulk_create(
        Item(job=job, subjob=subjob, path=f"f{n:05}", size=1, status=F) for n in range(1234)
    )

    response = client.get(f"/api/v1/jobs/{job.uuid}/result", HTTP_ACCEPT="text/csv")
    chunks = list(response.streaming_content)

    assert isinstance(response, StreamingHttpResponse)
    assert len(chunks) > 1
    lines = b"".join(chunks).decode().splitlines()
    assert len(lines) == 1 + 1234
    assert lines[1].startswith("f00000,") and lines[-1].startswith("f01233,")


def test_a_result_format_nobody_offers_is_406(api_as):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=F)
    response = client.get(f"/api/v1/jobs/{job.uuid}/result", HTTP_ACCEPT="application/xml")
    assert_problem(response, 406)


def test_errors_of_the_result_are_problems_even_when_csv_was_asked_for(api_as):
    response = api_as(Role.DATA_USER).get(
        f"/api/v1/jobs/{uuid.uuid4()}/result", HTTP_ACCEPT="text/csv"
    )
    assert_problem(response, 404, "no job")
