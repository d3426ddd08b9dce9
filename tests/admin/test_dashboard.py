"""The staff dashboard: counts, what needs attention, the last day's activity, the broker."""

import socket
from datetime import timedelta

import pytest
from celery import current_app
from django.test import Client
from django.utils import timezone

from staging.models import Job, JobStatus
from tests.factories import JobFactory, SubJobFactory, UserFactory

DASHBOARD = "/admin/dashboard/"


def ended(status, *, minutes_ago: int, **fields):
    job = JobFactory(status=status, **fields)
    moment = timezone.now() - timedelta(minutes=minutes_ago)
    Job.objects.filter(pk=job.pk).update(started_at=moment, finished_at=moment)
    job.refresh_from_db()
    return job


def test_it_counts_jobs_by_status_with_links_to_the_list(operator_client):
    JobFactory.create_batch(2, status=JobStatus.RUNNING)
    JobFactory(status=JobStatus.FAILED)

    page = operator_client.get(DASHBOARD).content.decode()

    assert (
        '<a href="/admin/staging/job/?status__exact=RUNNING">'
        '<span class="badge status-running">Running</span>'
        '<span class="status-count">2</span></a>' in page
    )
    assert '<span class="status-count">1</span>' in page
    assert "(3 in all," in page


def test_it_lists_the_last_hours_failures_with_links(operator_client):
    recent = ended(JobStatus.FAILED, minutes_ago=10, error="archive unreachable")
    ended(JobStatus.FAILED, minutes_ago=120)
    ended(JobStatus.FINISHED, minutes_ago=5)

    response = operator_client.get(DASHBOARD)

    page = response.content.decode()
    assert response.context["failed_count"] == 1
    assert f'href="/admin/staging/job/{recent.pk}/change/"' in page
    assert "archive unreachable" in page
    listed = operator_client.get(response.context["failed_url"]).context["cl"].result_list
    assert [job.pk for job in listed] == [recent.pk]


def test_it_names_the_oldest_running_and_the_longest_waiting_job(operator_client):
    now = timezone.now()
    oldest = JobFactory(status=JobStatus.RUNNING, started_at=now - timedelta(hours=3))
    JobFactory(status=JobStatus.RUNNING, started_at=now - timedelta(minutes=1))
    waiting = JobFactory(status=JobStatus.NOT_STARTED)
    Job.objects.filter(pk=waiting.pk).update(created_at=now - timedelta(minutes=42))

    page = operator_client.get(DASHBOARD).content.decode()

    assert f"{oldest.uuid}</a>\n            running for 3 h 0 min" in page
    assert f"{waiting.uuid}</a>\n            queued 42 min" in page


def test_it_flags_sub_jobs_whose_lease_expired(operator_client):
    job = JobFactory(status=JobStatus.RUNNING)
    SubJobFactory(
        job=job,
        sequence=3,
        status=JobStatus.RUNNING,
        worker="celery@stager-09:77",
        lease_expires_at=timezone.now() - timedelta(minutes=4),
    )

    page = operator_client.get(DASHBOARD).content.decode()

    assert "sub-job 3 on stager-09, lease expired 4" in page


def test_it_charts_the_jobs_and_bytes_of_the_last_day(operator_client):
    job = ended(JobStatus.FINISHED, minutes_ago=0, bytes_done=3 * 1024**2)
    ended(JobStatus.FAILED, minutes_ago=0)
    subjob = SubJobFactory(job=job, sequence=1, status=JobStatus.FINISHED, bytes_done=3 * 1024**2)
    type(subjob).objects.filter(pk=subjob.pk).update(finished_at=timezone.now())
    hour = f"{timezone.now():%H}:00"

    page = operator_client.get(DASHBOARD).content.decode()

    assert page.count('<svg class="chart-svg"') == 2
    assert f"<title>{hour}: 1 finished</title>" in page
    assert f"<title>{hour}: 1 failed</title>" in page
    assert f"<title>{hour}: 3.0\xa0MB staged</title>" in page
    assert "https://" not in page.split('<svg class="chart-svg"')[1]


def test_it_shows_the_queue_lengths_and_that_no_worker_answers(operator_client, broker):
    for _ in range(3):
        current_app.send_task(
            "tasks.staging.stage_subjob",
            args=[0],
            queue="staging",
            declare=[current_app.amqp.queues["staging"]],
        )

    response = operator_client.get(DASHBOARD)

    assert response.context["broker"].queues == {"staging": 3, "control": 0}
    page = response.content.decode()
    assert '<td>staging</td><td class="count">3</td>' in page
    assert "No worker answered" in page


def test_a_dead_broker_is_reported_not_waited_for(operator_client, monkeypatch):
    monkeypatch.setitem(current_app.conf, "broker_url", "redis://127.0.0.1:1/0")

    page = operator_client.get(DASHBOARD).content.decode()

    assert "The broker does not answer" in page


def test_a_broker_that_accepts_but_never_answers_does_not_hang_the_page(
    operator_client, monkeypatch
):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the kernel; nobody ever reads or replies
        port = silent.getsockname()[1]
        monkeypatch.setitem(current_app.conf, "broker_url", f"redis://127.0.0.1:{port}/0")

        page = operator_client.get(DASHBOARD).content.decode()

    assert "The broker does not answer" in page


@pytest.mark.integration
def test_it_lists_the_workers_that_answer_a_ping(start_worker):
    worker = start_worker(concurrency=1)
    staff = UserFactory(username="wendy")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    client = Client()
    client.force_login(staff)

    response = client.get(DASHBOARD)

    names = response.context["broker"].workers
    assert any(name.startswith(worker.name.split("@")[0] + "@") for name in names)
    assert worker.name.split("@")[0] in response.content.decode()


def test_staff_without_the_job_permission_may_not_see_it(admin_role_client):
    assert admin_role_client.get(DASHBOARD).status_code == 403
