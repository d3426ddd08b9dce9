"""Cancel, retry and release, from the list and from a job's page: each goes through the
services, says what it did, and refuses plainly what it cannot do."""

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.utils import timezone

from staging.models import Item, Job, JobStatus, Pin, SubJob
from tests.factories import ItemFactory, JobFactory, SubJobFactory

LIST = "/admin/staging/job/"


def run_action(client, action: str, *jobs):
    return client.post(
        LIST,
        {"action": action, "_selected_action": [job.pk for job in jobs]},
        follow=True,
    )


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def queued_job(status=JobStatus.NOT_STARTED):
    job = JobFactory(status=status, files_total=1)
    subjob = SubJobFactory(job=job, sequence=1)
    ItemFactory(job=job, subjob=subjob)
    return job


def failed_job():
    job = JobFactory(status=JobStatus.FAILED, files_total=2, files_failed=2)
    subjob = SubJobFactory(job=job, sequence=1, status=JobStatus.FAILED)
    for name in ("a", "b"):
        ItemFactory(job=job, subjob=subjob, path=name, status=JobStatus.FAILED, error="EIO")
    return job


def pinned_job(status=JobStatus.FINISHED, pins=2):
    job = JobFactory(status=status)
    for n in range(pins):
        Pin.objects.create(
            job=job, store=job.store, path=f"p{n}", expires_at=timezone.now() + timedelta(days=1)
        )
    return job


def test_cancel_stops_a_queued_job_and_says_so(operator_client):
    job = queued_job()

    response = run_action(operator_client, "cancel_jobs", job)

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert Item.objects.get(job=job).status == JobStatus.CANCELLED
    assert messages_of(response) == [f"Cancelled 1 job: {job.uuid}."]
    assert LogEntry.objects.filter(object_id=str(job.pk), change_message__contains="Cancelled")


def test_cancel_of_a_running_job_leaves_it_cancelling_until_its_workers_stop(operator_client):
    job = queued_job(status=JobStatus.RUNNING)
    SubJobFactory(job=job, sequence=2, status=JobStatus.RUNNING, worker="celery@h:1")

    response = run_action(operator_client, "cancel_jobs", job)

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLING
    assert "running sub-jobs stop after their current file" in messages_of(response)[0]


def test_cancel_refuses_a_finished_job_and_names_it(operator_client):
    finished = JobFactory(status=JobStatus.FINISHED)
    queued = queued_job()

    response = run_action(operator_client, "cancel_jobs", finished, queued)

    finished.refresh_from_db()
    assert finished.status == JobStatus.FINISHED
    assert messages_of(response) == [
        f"Cancelled 1 job: {queued.uuid}.",
        f"Could not cancel 1 job: job {finished.uuid} is already FINISHED and cannot be cancelled",
    ]


def test_cancelling_a_cancelled_job_again_is_harmless(operator_client):
    job = JobFactory(status=JobStatus.CANCELLED)

    response = run_action(operator_client, "cancel_jobs", job)

    assert messages_of(response) == [f"Already cancelled or cancelling: {job.uuid}; nothing to do."]


def test_retry_puts_the_failed_items_back_in_new_sub_jobs(operator_client):
    job = failed_job()

    response = run_action(operator_client, "retry_failed_items", job)

    job.refresh_from_db()
    assert job.status == JobStatus.NOT_STARTED
    assert set(Item.objects.filter(job=job).values_list("status", flat=True)) == {
        JobStatus.NOT_STARTED
    }
    assert SubJob.objects.filter(job=job, status=JobStatus.NOT_STARTED).count() == 1
    assert messages_of(response) == [
        f"Retrying the failed items of 1 job (2 items) as new sub-jobs: {job.uuid}."
    ]


def test_retry_refuses_a_job_that_is_still_running(operator_client):
    job = queued_job(status=JobStatus.RUNNING)

    response = run_action(operator_client, "retry_failed_items", job)

    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    assert messages_of(response) == [
        f"Could not retry 1 job: job {job.uuid} is still active; there is nothing to retry"
    ]


def test_release_drops_the_pins_of_a_job(operator_client):
    job = pinned_job()

    response = run_action(operator_client, "release_pins", job)

    assert not Pin.objects.filter(job=job, released_at__isnull=True).exists()
    assert messages_of(response) == [
        f"Released 2 pins of 1 job: {job.uuid}. The sweeper deletes the staged copies no other "
        "job pins (those of a job still running, once it ends)."
    ]


def test_release_refuses_a_job_without_pins(operator_client):
    running = pinned_job(status=JobStatus.RUNNING, pins=1)
    bare = pinned_job(pins=0)

    response = run_action(operator_client, "release_pins", running, bare)

    assert not Pin.objects.filter(job=running, released_at__isnull=True).exists()
    assert (
        messages_of(response)[1]
        == f"Could not release the pins of 1 job: job {bare.uuid} holds no pins"
    )


def test_an_action_on_too_many_jobs_at_once_does_nothing(operator_client, monkeypatch):
    monkeypatch.setattr("staging.admin.actions.MAX_JOBS_PER_ACTION", 2)
    jobs = [queued_job() for _ in range(3)]

    response = run_action(operator_client, "cancel_jobs", *jobs)

    assert not Job.objects.filter(status=JobStatus.CANCELLED).exists()
    assert "at most 2 jobs at a time" in messages_of(response)[0]


def test_the_cancel_button_of_a_job_page_cancels_it_and_comes_back(operator_client):
    job = queued_job()

    response = operator_client.post(f"/admin/staging/job/{job.pk}/act/cancel/", follow=True)

    assert response.redirect_chain == [(f"/admin/staging/job/{job.pk}/change/", 302)]
    page = response.content.decode()
    assert f"Cancelled 1 job: {job.uuid}." in page
    assert '<span class="badge status-cancelled">Cancelled</span>' in page


@pytest.mark.parametrize(
    ("method", "action", "status"), [("get", "cancel", 405), ("post", "explode", 404)]
)
def test_job_page_actions_only_answer_known_actions_by_post(
    operator_client, method, action, status
):
    job = queued_job()

    response = getattr(operator_client, method)(f"/admin/staging/job/{job.pk}/act/{action}/")

    assert response.status_code == status
    job.refresh_from_db()
    assert job.status == JobStatus.NOT_STARTED
