"""A job's page: facts, progress, timeline, errors, sub-jobs with their Celery results, items."""

from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import Permission
from django.utils import timezone
from django_celery_results.models import TaskResult

from staging.models import JobStatus, Pin
from tests.factories import ItemFactory, JobFactory, StoreFactory, SubJobFactory, UserFactory


def page_of(job) -> str:
    return f"/admin/staging/job/{job.pk}/change/"


def failed_job():
    job = JobFactory(
        store=StoreFactory(slug="archive"),
        owner=UserFactory(username="frank"),
        task="stage",
        status=JobStatus.PARTIALLY_FAILED,
        files_total=3,
        files_done=1,
        files_failed=2,
        bytes_total=300,
        bytes_done=100,
        parameters={"priority": "high"},
        result={"files_finished": 1, "files_failed": 2},
        started_at=datetime(2026, 3, 1, 10, 0, 30, tzinfo=UTC),
        finished_at=datetime(2026, 3, 1, 10, 5, 30, tzinfo=UTC),
    )
    job.__class__.objects.filter(pk=job.pk).update(created_at=datetime(2026, 3, 1, 10, tzinfo=UTC))
    ItemFactory(job=job, path="a.dat", status=JobStatus.FINISHED)
    ItemFactory(job=job, path="b.dat", status=JobStatus.FAILED, error="No such file: b.dat")
    ItemFactory(job=job, path="c.dat", status=JobStatus.FAILED, error="No such file: c.dat")
    return job


def test_it_shows_the_facts_progress_and_timeline(operator_client):
    job = failed_job()

    response = operator_client.get(page_of(job))

    assert response.status_code == 200
    page = response.content.decode()
    assert '<span class="badge status-partially-failed">Partially failed</span>' in page
    assert "<strong>stage</strong> on archive for frank" in page
    assert "1 / 3 files, 2 failed" in page
    assert "2026-03-01 10:00:00 UTC" in page  # created
    assert "after 30 s in the queue" in page  # started
    assert "ran 5 min 0 s" in page  # finished
    assert "&quot;priority&quot;: &quot;high&quot;" in page


def test_it_explains_what_went_wrong_with_the_failed_items_reasons(operator_client):
    job = failed_job()

    page = operator_client.get(page_of(job)).content.decode()

    assert "What went wrong" in page
    assert "<code>No such file: b.dat</code>" in page
    assert f"?job={job.uuid}&amp;status__exact=FAILED" in page


def test_it_links_item_counts_per_status_to_the_filtered_item_list(operator_client):
    job = failed_job()

    page = operator_client.get(page_of(job)).content.decode()

    assert f'href="/admin/staging/item/?job={job.uuid}&amp;status__exact=FINISHED"' in page
    assert f'href="/admin/staging/item/?job={job.uuid}"' in page


def test_the_item_list_shows_only_the_items_of_the_job_it_is_filtered_by(operator_client):
    job = failed_job()
    ItemFactory(job=JobFactory(), path="someone-else.dat")

    response = operator_client.get("/admin/staging/item/", {"job": str(job.uuid)})

    assert sorted(item.path for item in response.context["cl"].result_list) == [
        "a.dat",
        "b.dat",
        "c.dat",
    ]
    assert f'value="{job.uuid}"' in response.content.decode()


def test_it_shows_sub_jobs_with_worker_host_attempts_lease_and_celery_result(operator_client):
    job = JobFactory(status=JobStatus.RUNNING, started_at=timezone.now())
    running = SubJobFactory(
        job=job,
        sequence=1,
        status=JobStatus.RUNNING,
        worker="celery@stager-07:4242",
        attempts=2,
        lease_expires_at=timezone.now() - timedelta(seconds=30),
        celery_task_id="0b5c2a6e-0000-4000-8000-000000000001",
    )
    result = TaskResult.objects.create(task_id=running.celery_task_id, status="STARTED")
    SubJobFactory(job=job, sequence=2, celery_task_id="0b5c2a6e-0000-4000-8000-000000000002")

    page = operator_client.get(page_of(job)).content.decode()

    assert "Sub-jobs (2)" in page
    assert "<td>stager-07</td>" in page
    assert "celery@stager-07:4242" in page
    assert "<td>2</td>" in page
    assert '<tr class="lease-expired">' in page and "expired</strong>" in page
    assert (
        f'<a href="/admin/django_celery_results/taskresult/{result.pk}/change/">STARTED</a>' in page
    )
    assert "no result yet" in page


def test_the_page_is_read_only(operator_client):
    job = failed_job()

    response = operator_client.get(page_of(job))

    page = response.content.decode()
    assert response.context["title"] == "View job"
    assert 'name="_save"' not in page and 'name="_continue"' not in page
    assert operator_client.post(page_of(job), {"task": "hacked"}).status_code == 403


def test_it_offers_the_actions_that_fit_the_jobs_state(operator_client):
    running = JobFactory(status=JobStatus.RUNNING)
    failed = failed_job()
    finished = JobFactory(status=JobStatus.FINISHED)
    Pin.objects.create(
        job=finished, store=finished.store, path="x", expires_at=timezone.now() + timedelta(1)
    )

    def buttons(job):
        page = operator_client.get(page_of(job)).content.decode()
        return [name for name in ("cancel", "retry", "release") if f"job-action-{name}" in page]

    assert buttons(running) == ["cancel"]
    assert buttons(failed) == ["retry"]
    assert buttons(finished) == ["release"]


def test_staff_without_the_change_permission_see_no_actions(db, client):
    viewer = UserFactory(username="victor")
    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(Permission.objects.get(codename="view_job"))
    client.force_login(viewer)
    job = JobFactory(status=JobStatus.RUNNING)

    page = client.get(page_of(job)).content.decode()

    assert "job-action-cancel" not in page
    assert client.post(f"/admin/staging/job/{job.pk}/act/cancel/").status_code == 403
