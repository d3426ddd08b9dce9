"""Sub-jobs in API v1 (…/subjobs/, …/status, …/result) and the seed-002 paths answering the same
data (/dmi/v1/dataJob/{requestId}/dataProducerJob/{dataProducerJobId}/status and /result)."""

import uuid

import pytest

from staging.models import JobStatus
from staging.roles import Role
from tests.api.helpers import assert_problem, make_job
from tests.factories import ItemFactory, SubJobFactory, UserFactory

pytestmark = pytest.mark.django_db

F, R, N = JobStatus.FINISHED, JobStatus.RUNNING, JobStatus.NOT_STARTED


def two_subjob_job(owner):
    """A running job: sub-job 1 finished (a.txt), sub-job 2 running (b.txt)."""
    job = make_job(owner=owner, status=R, items={"a.txt": F}, subjob_status=F)
    second = SubJobFactory(job=job, sequence=2, status=R, files_total=1, bytes_total=100)
    ItemFactory(job=job, subjob=second, path="b.txt", status=R)
    return job


def dmi(job, sequence, call, **query):
    query = {"dataProducerId": "primary", **query}
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return f"/dmi/v1/dataJob/{job.uuid}/dataProducerJob/{sequence}/{call}?{params}"


def test_the_subjobs_of_a_job_are_listed_in_order(api_as):
    client = api_as(Role.DATA_USER)
    job = two_subjob_job(client.user)

    response = client.get(f"/api/v1/jobs/{job.uuid}/subjobs/")

    assert response.status_code == 200
    rows = response.json()["results"]
    assert [(s["subjobId"], s["status"], s["files_total"]) for s in rows] == [
        (1, "FINISHED", 1),
        (2, "RUNNING", 1),
    ]
    assert rows[0]["resulturi"] == f"http://testserver/api/v1/jobs/{job.uuid}/items/?subjob=1"


def test_a_subjobs_status_is_its_canonical_status(api_as):
    client = api_as(Role.DATA_USER)
    job = two_subjob_job(client.user)
    assert client.get(f"/api/v1/jobs/{job.uuid}/subjobs/1/status").json() == {"status": "FINISHED"}
    assert client.get(f"/api/v1/jobs/{job.uuid}/subjobs/2/status").json() == {"status": "RUNNING"}


def test_a_finished_subjobs_result_points_at_its_files(api_as):
    client = api_as(Role.DATA_USER)
    job = two_subjob_job(client.user)

    response = client.get(f"/api/v1/jobs/{job.uuid}/subjobs/1/result")

    assert response.status_code == 200
    resulturi = response.json()["resulturi"]
    assert response.json() == {"resulturi": resulturi}
    files = client.get(resulturi).json()["results"]
    assert [(f["path"], f["status"]) for f in files] == [("a.txt", "FINISHED")]


def test_a_running_subjobs_result_is_409_with_retry_after(api_as):
    client = api_as(Role.DATA_USER)
    job = two_subjob_job(client.user)
    response = client.get(f"/api/v1/jobs/{job.uuid}/subjobs/2/result")
    assert_problem(response, 409, "RUNNING")
    assert int(response["Retry-After"]) > 0


@pytest.mark.parametrize("sequence", ["3", "0", "x", "-1", "1.0", "99999999999"])
def test_an_unknown_subjob_is_404(api_as, sequence):
    client = api_as(Role.DATA_USER)
    job = two_subjob_job(client.user)
    assert_problem(client.get(f"/api/v1/jobs/{job.uuid}/subjobs/{sequence}/status"), 404)
    assert_problem(client.get(dmi(job, sequence, "status")), 404)


def test_the_dmi_paths_answer_the_same_data_as_api_v1(api_as):
    client = api_as(Role.DATA_USER)
    job = two_subjob_job(client.user)
    for sequence in (1, 2):
        ours = client.get(f"/api/v1/jobs/{job.uuid}/subjobs/{sequence}/status")
        theirs = client.get(dmi(job, sequence, "status"))
        assert (theirs.status_code, theirs.json()) == (200, ours.json())
    ours = client.get(f"/api/v1/jobs/{job.uuid}/subjobs/1/result")
    theirs = client.get(dmi(job, 1, "result", destination="ncmp-results"))
    assert (theirs.status_code, theirs.json()) == (200, ours.json())
    pending = client.get(dmi(job, 2, "result", destination="ncmp-results"))
    assert_problem(pending, 409, "RUNNING")


def test_the_dmi_status_needs_the_data_producer_id(api_as):
    client = api_as(Role.DATA_USER)
    job = two_subjob_job(client.user)
    response = client.get(f"/dmi/v1/dataJob/{job.uuid}/dataProducerJob/1/status")
    assert assert_problem(response, 400)["field"] == "dataProducerId"


def test_the_dmi_result_needs_a_destination(api_as):
    client = api_as(Role.DATA_USER)
    job = two_subjob_job(client.user)
    assert assert_problem(client.get(dmi(job, 1, "result")), 400)["field"] == "destination"


def test_another_data_producer_has_no_such_data_job(api_as):
    client = api_as(Role.DATA_USER)
    job = two_subjob_job(client.user)
    assert_problem(client.get(dmi(job, 1, "status", dataProducerId="other")), 404, "other")


@pytest.mark.parametrize("call", ["status", "result"])
def test_another_users_data_job_is_404(api_as, call):
    job = two_subjob_job(UserFactory(username="someone-else"))
    client = api_as(Role.DATA_USER)
    assert_problem(client.get(dmi(job, 1, call, destination="t")), 404, "no job")
    assert_problem(client.get(f"/api/v1/jobs/{job.uuid}/subjobs/1/{call}"), 404, "no job")
    assert_problem(client.get(f"/api/v1/jobs/{job.uuid}/subjobs/"), 404, "no job")


def test_an_unknown_data_job_is_404(api_as):
    client = api_as(Role.DATA_USER)
    url = f"/dmi/v1/dataJob/{uuid.uuid4()}/dataProducerJob/1/status?dataProducerId=primary"
    assert_problem(client.get(url), 404, "no job")


@pytest.mark.parametrize("role", [Role.ADMIN, Role.SERVICE_USER])
def test_admin_and_service_user_may_not_read_subjobs(api_as, role):
    client = api_as(role)
    job = two_subjob_job(client.user)
    assert_problem(client.get(dmi(job, 1, "status")), 403, "role")
    assert_problem(client.get(f"/api/v1/jobs/{job.uuid}/subjobs/"), 403, "role")
