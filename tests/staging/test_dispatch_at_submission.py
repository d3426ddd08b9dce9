"""A submission hands its own sub-job to the broker when a dispatch pass would hand out that one
and nothing else: a job of one sub-job, nothing else waiting, room under the in-flight bound,
the store's limit and the owner's. Anything else waits for a pass, woken as before."""

import json

import pytest
from django.db import connection

from staging.models import AccountLimits, JobStatus, SubJob
from staging.models_tape import TapeLibrary
from staging.selectors_accounts import account_limits_changed, remember_limit_rows
from staging.services.dispatch import subjobs_dispatch
from staging.services.jobs import job_create_staging
from staging.services.publishing import JOB_HEADER
from tests.factories import FileFactory, JobFactory, StoreFactory, SubJobFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers: every submission wakes a pass there")


@pytest.fixture(autouse=True)
def in_flight_limit(settings):
    settings.STAGING = {**settings.STAGING, "DISPATCH_MAX_IN_FLIGHT": 100}


@pytest.fixture
def messages(broker, settings):
    """(staging queue, control queue) messages of this test run's broker."""

    def read():
        prefix = settings.BROKER_KEY_PREFIX
        return tuple(
            [json.loads(m) for m in broker.lrange(f"{prefix}{queue}", 0, -1)]
            for queue in ("staging", "control")
        )

    return read


@pytest.fixture
def submit(django_capture_on_commit_callbacks):
    """A staging job of ``files`` new catalogue files of ``store``, committed."""

    def create(store, *, files: int = 1, owner=None):
        entries = [FileFactory(store=store) for _ in range(files)]
        with django_capture_on_commit_callbacks(execute=True):
            job = job_create_staging(
                owner=owner or UserFactory(), store=store, files=entries, source="api"
            )
        return job

    return create


def in_flight(*, store=None, owner=None) -> SubJob:
    job = JobFactory(store=store or StoreFactory(), owner=owner or UserFactory())
    return SubJobFactory(job=job, status=JobStatus.RUNNING, worker="w@h:1")


def test_a_lone_one_sub_job_job_is_handed_out_by_its_submission(submit, messages):
    job = submit(StoreFactory())

    subjob = job.subjobs.get()
    assert subjob.dispatched_at is not None and subjob.celery_task_id
    staging, control = messages()
    assert [m["headers"]["id"] for m in staging] == [subjob.celery_task_id]
    assert staging[0]["headers"]["task"] == "tasks.staging.run_subjob"
    assert staging[0]["headers"][JOB_HEADER] == str(job.uuid)  # for the worker's log context
    assert control == []  # no pass was woken for it
    assert subjobs_dispatch() == 0  # a pass finds nothing more to hand out


def test_a_submission_never_passes_work_already_waiting(submit, messages):
    store = StoreFactory()
    waiting = SubJobFactory(job=JobFactory(store=store))

    job = submit(store)

    assert job.subjobs.get().dispatched_at is None
    staging, control = messages()
    assert staging == [] and len(control) == 1  # a pass is woken: it picks the oldest first
    assert subjobs_dispatch() == 2
    waiting.refresh_from_db()
    assert waiting.dispatched_at is not None


def test_a_full_store_keeps_the_submission_waiting(submit, messages):
    store = StoreFactory(max_active=1)
    in_flight(store=store)

    job = submit(store)

    assert job.subjobs.get().dispatched_at is None
    assert messages()[0] == []


def test_a_store_with_room_under_its_limit_takes_it(submit, messages):
    store = StoreFactory(max_active=2)
    in_flight(store=store)

    job = submit(store)

    assert job.subjobs.get().dispatched_at is not None


def test_an_owner_at_its_limit_keeps_the_submission_waiting(submit, messages):
    owner = UserFactory()
    AccountLimits.objects.create(user=owner, max_active_subjobs=1)
    account_limits_changed()
    in_flight(owner=owner)

    job = submit(StoreFactory(), owner=owner)

    assert job.subjobs.get().dispatched_at is None
    assert messages()[0] == []


def test_an_owner_s_limit_lowered_a_moment_ago_holds_at_once(submit, messages):
    # The owner as a token login hands it over: with the limit rows it read then (none). An
    # admin then gives the owner a limit, from another process whose change this one's memory
    # has not heard of; a pass would apply it at once, so the submission must too.
    owner = UserFactory()
    remember_limit_rows(owner, [])
    AccountLimits.objects.create(user=owner, max_active_subjobs=1)
    in_flight(owner=owner)

    job = submit(StoreFactory(), owner=owner)

    assert job.subjobs.get().dispatched_at is None
    assert messages()[0] == []


def test_the_in_flight_bound_keeps_the_submission_waiting(submit, messages, settings):
    settings.STAGING = {**settings.STAGING, "DISPATCH_MAX_IN_FLIGHT": 1}
    in_flight()

    job = submit(StoreFactory())

    assert job.subjobs.get().dispatched_at is None
    assert messages()[0] == []


def test_a_job_of_several_sub_jobs_waits_for_a_pass(submit, messages, settings):
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 1}

    job = submit(StoreFactory(), files=2)

    assert not job.subjobs.filter(dispatched_at__isnull=False).exists()
    staging, control = messages()
    assert staging == [] and len(control) == 1


def test_a_tape_library_s_work_waits_for_the_recall_scheduler(submit, messages):
    store = StoreFactory(kind="posix-tape")
    TapeLibrary.objects.create(store=store, scheduler=True)

    job = submit(store)

    assert job.subjobs.get().dispatched_at is None


def test_a_store_with_a_free_space_watermark_waits_for_a_pass(submit, messages):
    job = submit(StoreFactory(free_space_low="1%"))

    assert job.subjobs.get().dispatched_at is None
    assert len(messages()[1]) == 1
