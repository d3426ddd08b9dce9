"""POST /api/v1/jobs/{id}/cancel, …/retry, …/release: the Job engine's transitions over HTTP."""

import pytest

from staging.models import Item, Job, JobStatus, Pin, SubJob
from staging.roles import Role
from tests.api.helpers import assert_problem, make_job
from tests.factories import StoreFactory, SubJobFactory, UserFactory

pytestmark = pytest.mark.django_db

F, X, R, N = JobStatus.FINISHED, JobStatus.FAILED, JobStatus.RUNNING, JobStatus.NOT_STARTED


def post(client, job, action, body=None):
    return client.post(f"/api/v1/jobs/{job.uuid}/{action}", body, format="json")


def test_cancelling_a_queued_job_cancels_it_at_once_with_200(api_as):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=N, items={"a.txt": N})

    response = post(client, job, "cancel")

    assert response.status_code == 200
    assert response.json()["status"] == "CANCELLED"
    assert response["Location"] == f"http://testserver/api/v1/task_status/{job.uuid}"
    assert Item.objects.get(job=job).status == JobStatus.CANCELLED


def test_cancelling_a_running_job_answers_202_cancelling(api_as):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=R, items={"a.txt": R})
    SubJobFactory(job=job, sequence=2, status=N)

    response = post(client, job, "cancel")

    assert response.status_code == 202
    assert response.json()["status"] == "CANCELLING"
    assert int(response["Retry-After"]) > 0
    assert SubJob.objects.get(job=job, sequence=2).status == JobStatus.CANCELLED
    # The running sub-job stops at its worker's next check; the job waits for it.
    assert SubJob.objects.get(job=job, sequence=1).status == JobStatus.RUNNING
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLING


def test_cancelling_twice_is_harmless(api_as):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=R, items={"a.txt": R})
    assert post(client, job, "cancel").status_code == 202
    again = post(client, job, "cancel")
    assert (again.status_code, again.json()["status"]) == (202, "CANCELLING")


@pytest.mark.parametrize("status", [F, X, JobStatus.PARTIALLY_FAILED])
def test_cancelling_an_ended_job_is_409_and_changes_nothing(api_as, status):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=status, items={"a.txt": F})
    assert_problem(post(client, job, "cancel"), 409, status)
    assert Job.objects.get(pk=job.pk).status == status


def test_retrying_a_failed_job_runs_its_failed_files_again_with_202(api_as):
    client = api_as(Role.DATA_USER)
    job = make_job(
        owner=client.user, status=JobStatus.PARTIALLY_FAILED, items={"a.txt": F, "b.txt": X}
    )

    response = post(client, job, "retry")

    assert response.status_code == 202
    assert response.json()["status"] == "NOT_STARTED"
    assert response["Location"] == f"http://testserver/api/v1/task_status/{job.uuid}"
    assert int(response["Retry-After"]) > 0
    assert dict(Item.objects.filter(job=job).values_list("path", "status")) == {
        "a.txt": F,
        "b.txt": N,
    }
    assert list(job.subjobs.order_by("sequence").values_list("sequence", "status")) == [
        (1, JobStatus.PARTIALLY_FAILED),
        (2, N),
    ]


@pytest.mark.parametrize(
    ("status", "items", "words"),
    [(R, {"a.txt": X}, "still active"), (F, {"a.txt": F}, "no failed item")],
)
def test_retrying_an_active_job_or_one_without_failures_is_409(api_as, status, items, words):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=status, items=items)
    if status == R:
        Item.objects.filter(job=job).update(status=R)
    assert_problem(post(client, job, "retry"), 409, words)
    assert Job.objects.get(pk=job.pk).status == status


def test_releasing_an_ended_job_drops_all_its_pins(api_as):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=F, items={"a.txt": F, "b.txt": F})

    response = post(client, job, "release")

    assert response.status_code == 200
    assert response.json() == {"jobId": str(job.uuid), "released": 2}
    assert not Pin.objects.filter(job=job, released_at__isnull=True).exists()


def test_releasing_some_paths_keeps_the_other_pins(api_as):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=F, items={"a.txt": F, "b.txt": F})

    response = post(client, job, "release", {"paths": ["b.txt", "b.txt"]})

    assert response.json()["released"] == 1
    live = Pin.objects.filter(job=job, released_at__isnull=True).values_list("path", flat=True)
    assert list(live) == ["a.txt"]


def test_releasing_a_path_that_is_not_the_jobs_is_400_and_releases_nothing(api_as):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=F, items={"a.txt": F})

    response = post(client, job, "release", {"paths": ["a.txt", "other.txt"]})

    assert assert_problem(response, 400, "other.txt")["unknown_paths"] == ["other.txt"]
    assert Pin.objects.get(job=job).released_at is None


def test_releasing_a_job_still_at_work_releases_its_pins(api_as):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=R, items={"a.txt": R})
    assert post(client, job, "release").json()["released"] == 1
    assert Pin.objects.get(job=job).released_at is not None


@pytest.mark.parametrize("action", ["cancel", "retry", "release"])
def test_another_users_job_is_404_and_untouched(api_as, action):
    job = make_job(owner=UserFactory(username="someone-else"), status=X, items={"a.txt": X})
    assert_problem(post(api_as(Role.DATA_USER), job, action), 404, "no job")
    assert Job.objects.get(pk=job.pk).status == X
    assert Pin.objects.get(job=job).released_at is None


def test_a_collection_admin_may_cancel_jobs_on_stores_they_administer(api_as):
    client = api_as(Role.COLLECTION_ADMIN)
    store = StoreFactory(slug="theirs")
    store.administrators.add(client.user)
    job = make_job(owner=UserFactory(username="u1"), store=store, status=N, items={"a.txt": N})
    assert post(client, job, "cancel").status_code == 200


@pytest.mark.parametrize("role", [Role.ADMIN, Role.SERVICE_USER])
@pytest.mark.parametrize("action", ["cancel", "retry", "release"])
def test_admin_and_service_user_may_not_steer_jobs(api_as, role, action):
    client = api_as(role)
    job = make_job(owner=client.user, status=X, items={"a.txt": X})
    assert_problem(post(client, job, action), 403, "role")
