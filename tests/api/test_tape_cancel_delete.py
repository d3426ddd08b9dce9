"""WLCG tape API: POST {uri}/stage/{id}/cancel and DELETE {uri}/stage/{id}."""

from pathlib import Path

import pytest
from django.utils import timezone

from staging.models import Item, Job, JobStatus, Pin, SubJob
from staging.roles import Role
from staging.services.execution import stage_item, subjob_run
from tests.api.helpers import assert_problem
from tests.api.tape_helpers import API, staged_job

pytestmark = pytest.mark.django_db


def statuses(job: Job) -> dict[str, str]:
    return dict(Item.objects.filter(job=job).values_list("path", "status"))


def cancel(client, job: Job, *paths: str, slash: str = ""):
    return client.post(f"{API}/stage/{job.uuid}/cancel{slash}", {"paths": list(paths)}, "json")


@pytest.mark.parametrize("slash", ["", "/"])
def test_cancelling_some_files_cancels_those_and_leaves_the_rest(client_for, archive_files, slash):
    archive_files({"a": b"a", "b": b"b", "c": b"c"})
    client = client_for()
    job = staged_job(client, "/a", "/b", "/c")

    response = cancel(client, job, "/a", "//c", slash=slash)

    assert response.status_code == 200, response.content
    assert statuses(job) == {
        "a": JobStatus.CANCELLED,
        "b": JobStatus.NOT_STARTED,
        "c": JobStatus.CANCELLED,
    }
    files = client.get(f"{API}/stage/{job.uuid}").json()["files"]
    assert [f["state"] for f in files] == ["CANCELLED", "SUBMITTED", "CANCELLED"]
    job.refresh_from_db()
    assert job.status == JobStatus.NOT_STARTED


def test_a_path_that_is_not_in_the_request_is_a_400_and_changes_nothing(client_for, archive_files):
    archive_files({"a": b"a", "b": b"b", "other": b"o"})
    client = client_for()
    job = staged_job(client, "/a", "/b")
    before = statuses(job), list(SubJob.objects.values_list("status", flat=True))

    response = cancel(client, job, "/a", "/other", "/never/existed")

    body = assert_problem(response, 400, "2 of 3 paths", "/other")
    assert body["unknown_paths"] == ["/other", "/never/existed"]
    assert (statuses(job), list(SubJob.objects.values_list("status", flat=True))) == before


def test_cancelling_every_file_cancels_the_request(client_for, archive_files):
    archive_files({"a": b"a", "b": b"b"})
    client = client_for()
    job = staged_job(client, "/a", "/b")

    assert cancel(client, job, "/a", "/b").status_code == 200

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert client.get(f"{API}/stage/{job.uuid}").json()["completedAt"] > 0


def test_a_queued_subjob_left_with_nothing_to_do_is_cancelled(client_for, archive_files, settings):
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 2}
    archive_files({name: name.encode() for name in "abcd"})
    client = client_for()
    job = staged_job(client, "/a", "/b", "/c", "/d")

    cancel(client, job, "/c", "/d")

    first, second = job.subjobs.order_by("sequence")
    assert (first.status, second.status) == (JobStatus.NOT_STARTED, JobStatus.CANCELLED)
    # The worker that takes the first sub-job then finishes the request.
    subjob_run(subjob_id=first.pk, worker="test", task_id="t")
    job.refresh_from_db()
    assert job.is_terminal
    assert statuses(job) == {
        "a": JobStatus.FINISHED,
        "b": JobStatus.FINISHED,
        "c": JobStatus.CANCELLED,
        "d": JobStatus.CANCELLED,
    }


def test_a_worker_skips_files_cancelled_after_it_read_its_subjob(
    client_for, archive_files, store, settings
):
    # A worker learns of a file's cancel at its next batch write, once per progress interval:
    # with no interval, after each file.
    settings.STAGING = {**settings.STAGING, "PROGRESS_INTERVAL_SECONDS": 0}
    archive_files({"keep": b"keep", "drop": b"drop"})
    client = client_for()
    job = staged_job(client, "/keep", "/drop")
    subjob = job.subjobs.get()

    def cancel_then_stage(item, store_, reporter):
        # The sub-job has read both items; the client cancels one while the first is copied.
        if item.path == "keep":
            cancel(client, job, "/drop")
        stage_item(item, store_, reporter)

    subjob_run(subjob_id=subjob.pk, worker="test", task_id="t", work=cancel_then_stage)

    assert statuses(job) == {"keep": JobStatus.FINISHED, "drop": JobStatus.CANCELLED}
    assert (Path(store.staging_root) / "keep").read_bytes() == b"keep"
    assert not (Path(store.staging_root) / "drop").exists()


def test_cancelling_files_that_are_over_changes_nothing(client_for, archive_files):
    archive_files({"a": b"a", "b": b"b"})
    client = client_for()
    job = staged_job(client, "/a", "/b")
    Item.objects.filter(job=job, path="a").update(
        status=JobStatus.FINISHED, finished_at=timezone.now()
    )

    assert cancel(client, job, "/a").status_code == 200

    assert statuses(job)["a"] == JobStatus.FINISHED


def test_cancel_bodies_without_paths_are_a_400(client_for, archive_files):
    archive_files({"a": b"a"})
    client = client_for()
    job = staged_job(client, "/a")
    for body in ({}, {"paths": []}, {"paths": "/a"}, {"paths": [3]}):
        assert_problem(client.post(f"{API}/stage/{job.uuid}/cancel", body, "json"), 400)
    assert statuses(job) == {"a": JobStatus.NOT_STARTED}


def test_cancelling_someone_elses_request_is_a_404(client_for, archive_files):
    archive_files({"a": b"a"})
    job = staged_job(client_for(username="alice"), "/a")
    assert_problem(cancel(client_for(username="mallory"), job, "/a"), 404)
    assert statuses(job) == {"a": JobStatus.NOT_STARTED}


def test_delete_cancels_releases_and_then_the_request_is_gone(client_for, archive_files):
    archive_files({"a": b"a", "b": b"b"})
    client = client_for()
    job = staged_job(client, "/a", "/b")

    response = client.delete(f"{API}/stage/{job.uuid}")

    assert response.status_code == 200
    assert_problem(client.get(f"{API}/stage/{job.uuid}"), 404)
    assert_problem(client.delete(f"{API}/stage/{job.uuid}"), 404)
    assert_problem(cancel(client, job, "/a"), 404)
    assert_problem(client.post(f"{API}/release/{job.uuid}", {"paths": ["/a"]}, "json"), 404)
    # The row stays for staff (and for the sweeper's sake), cancelled and unpinned.
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert set(statuses(job).values()) == {JobStatus.CANCELLED}
    assert not Pin.objects.filter(job=job, released_at__isnull=True).exists()


def test_deleting_a_finished_request_releases_its_staged_files(client_for, archive_files):
    archive_files({"a": b"a"})
    client = client_for()
    job = staged_job(client, "/a")
    subjob_run(subjob_id=job.subjobs.get().pk, worker="test", task_id="t")

    assert client.delete(f"{API}/stage/{job.uuid}/").status_code == 200

    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED
    assert Pin.objects.get(job=job).released_at is not None
    assert_problem(client.get(f"{API}/stage/{job.uuid}"), 404)


def test_a_data_admin_may_delete_anyones_request_and_others_may_not(client_for, archive_files):
    archive_files({"a": b"a"})
    job = staged_job(client_for(username="alice"), "/a")

    assert_problem(client_for(username="mallory").delete(f"{API}/stage/{job.uuid}"), 404)
    admin = client_for(Role.DATA_ADMIN, username="root")
    assert admin.delete(f"{API}/stage/{job.uuid}").status_code == 200
