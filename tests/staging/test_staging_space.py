"""Staging-space admission: free space below a store's low watermark pauses its dispatch (its
waiting jobs say why: peek, DTS still `staging`), free space at the high watermark resumes it,
and a request larger than the whole staging area is a 413 at once. The free-space reading is
simulated (staging_area_space patched); everything else is real."""

import io
from unittest import mock

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from staging.models import Job, Store
from staging.roles import Role
from staging.services.dispatch import subjobs_dispatch
from staging.services.jobs import job_create_staging
from staging.services.staging_space import STAGING_AREA_FULL, RequestTooLargeError
from tests.factories import JobFactory, StoreFactory, SubJobFactory, UserFactory

pytestmark = pytest.mark.django_db

GiB = 1024**3
TOTAL = 100 * GiB


@pytest.fixture
def free_space():
    """Set the simulated free space of every staging area: ``free_space(bytes)``."""
    reading = {"free": TOTAL}
    with mock.patch(
        "staging.services.staging_space.staging_area_space",
        side_effect=lambda root: (reading["free"], TOTAL),
    ):
        yield lambda free: reading.update(free=free)


@pytest.fixture(autouse=True)
def in_flight_limit(settings, broker):
    settings.STAGING = {**settings.STAGING, "DISPATCH_MAX_IN_FLIGHT": 100}


def job_on(store, subjobs=3, task="stage") -> Job:
    job = JobFactory(store=store, task=task)
    for sequence in range(1, subjobs + 1):
        SubJobFactory(job=job, sequence=sequence)
    return job


def dispatched(job: Job) -> int:
    return job.subjobs.filter(dispatched_at__isnull=False).count()


def test_dispatch_pauses_below_the_low_watermark_and_resumes_at_the_high(free_space):
    store = StoreFactory(free_space_low="10%", free_space_high="20%")
    job = job_on(store)

    free_space(5 * GiB)
    assert subjobs_dispatch() == 0
    assert Store.objects.get(pk=store.pk).staging_full_since is not None
    assert Job.objects.get(pk=job.pk).waiting == STAGING_AREA_FULL

    free_space(15 * GiB)  # between the watermarks: still paused, no flapping
    assert subjobs_dispatch() == 0

    free_space(20 * GiB)
    assert subjobs_dispatch() == 3
    assert Store.objects.get(pk=store.pk).staging_full_since is None
    assert Job.objects.get(pk=job.pk).waiting == ""


def test_between_the_watermarks_a_store_that_was_not_full_goes_on(free_space):
    store = StoreFactory(free_space_low="10GB", free_space_high="20GB")
    job = job_on(store)
    free_space(15 * GiB)

    assert subjobs_dispatch() == 3
    assert dispatched(job) == 3


def test_a_full_staging_area_holds_back_only_its_own_store(free_space):
    full = job_on(StoreFactory(free_space_low="50%"))
    roomy = job_on(StoreFactory())
    free_space(10 * GiB)

    assert subjobs_dispatch() == 3
    assert (dispatched(full), dispatched(roomy)) == (0, 3)


def test_releases_go_on_while_the_staging_area_is_full(free_space):
    store = StoreFactory(free_space_low="50%")
    release = job_on(store, subjobs=1, task="release")
    free_space(1 * GiB)

    assert subjobs_dispatch() == 1
    assert dispatched(release) == 1


def test_a_waiting_job_says_why_in_peek_and_the_dts_still_says_staging(
    free_space, store, archive_files, client_for
):
    Store.objects.filter(pk=store.pk).update(free_space_low="50%")
    (f,) = archive_files({"a.txt": b"a"})
    user, dts = client_for(Role.DATA_USER), client_for(Role.SERVICE_USER)
    job_id = user.post("/api/v1/jobs/", {"ids": [f.id]}, format="json").json()["jobId"]
    request_id = dts.post("/dts/staging", {"ids": [f.id]}, format="json").json()["request_id"]
    free_space(1 * GiB)
    subjobs_dispatch()

    peek = user.get(f"/api/v1/task_status/{job_id}/peek").json()
    assert (peek["status"], peek["waiting"]) == ("NOT_STARTED", STAGING_AREA_FULL)
    assert dts.get(f"/dts/staging?id={request_id}").json() == {"status": "staging"}

    free_space(TOTAL)
    subjobs_dispatch()
    assert "waiting" not in user.get(f"/api/v1/task_status/{job_id}/peek").json()


def test_a_job_that_ended_never_says_it_waits(free_space, store, archive_files, client_for):
    Store.objects.filter(pk=store.pk).update(free_space_low="50%")
    (f,) = archive_files({"a.txt": b"a"})
    user = client_for(Role.DATA_USER)
    job_id = user.post("/api/v1/jobs/", {"ids": [f.id]}, format="json").json()["jobId"]
    free_space(1 * GiB)
    subjobs_dispatch()
    assert Job.objects.get(uuid=job_id).waiting == STAGING_AREA_FULL

    user.post(f"/api/v1/jobs/{job_id}/cancel", format="json")

    peek = user.get(f"/api/v1/task_status/{job_id}/peek").json()
    assert peek["status"] == "CANCELLED"
    assert "waiting" not in peek


def test_a_request_larger_than_the_whole_staging_area_is_refused(free_space, store, archive_files):
    files = archive_files({"a.txt": b"a"})
    with (
        mock.patch("staging.services.staging_space.staging_area_space", return_value=(0, 0)),
        pytest.raises(RequestTooLargeError) as refused,
    ):
        job_create_staging(owner=UserFactory(), store=store, files=files, source="api")

    assert refused.value.status_code == 413
    assert not Job.objects.exists()


def test_the_api_answers_413_with_a_problem_body_and_creates_nothing(
    store, archive_files, client_for
):
    archive_files({"big.bin": b"x" * 1000})
    with mock.patch("staging.services.staging_space.staging_area_space", return_value=(500, 500)):
        response = client_for(Role.DATA_USER).post(
            "/api/v1/jobs/", {"paths": ["big.bin"]}, format="json"
        )

    assert response.status_code == 413, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert "more than the whole staging area" in body["detail"]
    assert (body["size"], body["staging_area_bytes"]) == (1000, 500)
    assert not Job.objects.exists()


def test_storelimit_sets_and_removes_the_watermarks():
    store = StoreFactory(max_active=2)

    call_command("storelimit", store.slug, "--free-space", "5%", "200GB", stdout=io.StringIO())
    store.refresh_from_db()
    assert (store.free_space_low, store.free_space_high, store.max_active) == ("5%", "200GB", 2)
    call_command("storelimit", store.slug, "--free-space", "", "", stdout=io.StringIO())
    store.refresh_from_db()
    assert (store.free_space_low, store.free_space_high) == ("", "")


@pytest.mark.parametrize("bad", ["lots", "150%", "5 parsecs"])
def test_storelimit_refuses_what_is_no_amount_of_space(bad):
    store = StoreFactory()

    with pytest.raises(CommandError, match=r"amount of space|whole filesystem"):
        call_command("storelimit", store.slug, "--free-space", bad, "")
    assert Store.objects.get(pk=store.pk).free_space_low == ""
