"""The deadline pass that runs with every dispatch pass: queued work of jobs past their
deadline fails in bulk (waiting in the database or already handed to the broker), finished
files stay finished, and the jobs roll up. Passes are called directly; the broker is the real
Redis. tests/integration/test_deadlines_with_workers.py runs it with real workers and beat."""

from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from staging.catalogue import item_work_for
from staging.models import Item, Job, JobStatus, Store
from staging.services.deadlines import jobs_past_deadline_fail
from staging.services.dispatch import subjobs_dispatch
from staging.services.execution import subjob_claim, subjob_run
from staging.services.jobs import job_create_staging, job_retry
from staging.services.tasks import task_perform
from tests.factories import (
    FileFactory,
    ItemFactory,
    JobFactory,
    StoreFactory,
    SubJobFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

PAST = timedelta(seconds=-1)


def job_with(items_per_subjob: list[int], *, deadline: timedelta | None = PAST, **fields) -> Job:
    """A job with one sub-job per entry, each with that many NOT_STARTED items."""
    job = JobFactory(store=fields.pop("store", None) or StoreFactory(), **fields)
    for sequence, count in enumerate(items_per_subjob, start=1):
        subjob = SubJobFactory(job=job, sequence=sequence, files_total=count)
        for n in range(count):
            ItemFactory(job=job, subjob=subjob, path=f"{sequence}/{n}.txt", size=10)
    if deadline is not None:
        Job.objects.filter(pk=job.pk).update(deadline_at=timezone.now() + deadline)
    return job


def outcome(job: Job) -> tuple[str, set, set]:
    job.refresh_from_db()
    items = set(job.items.values_list("status", "error"))
    subjobs = set(job.subjobs.values_list("status", "error"))
    return job.status, items, subjobs


def test_waiting_work_past_its_deadline_fails_and_the_job_with_it(broker):
    job = job_with([2, 3])

    assert jobs_past_deadline_fail() == 2

    status, items, subjobs = outcome(job)
    assert status == JobStatus.FAILED
    assert items == {(JobStatus.FAILED, "deadline exceeded")}
    assert subjobs == {(JobStatus.FAILED, "deadline exceeded")}
    assert job.files_failed == 5
    assert not job.items.filter(started_at__isnull=False).exists()


def test_a_subjob_already_in_the_broker_fails_and_its_delivery_then_does_nothing(broker, settings):
    settings.STAGING = {**settings.STAGING, "DISPATCH_MAX_IN_FLIGHT": 10}
    job = job_with([1], deadline=timedelta(hours=1))
    assert subjobs_dispatch() == 1
    subjob = job.subjobs.get()
    subjob.refresh_from_db()
    Job.objects.filter(pk=job.pk).update(deadline_at=timezone.now() + PAST)

    assert jobs_past_deadline_fail() == 1

    assert subjob_claim(subjob_id=subjob.pk, worker="w@h:1", task_id=subjob.celery_task_id) is None
    assert outcome(job)[0] == JobStatus.FAILED
    assert job.items.get().status == JobStatus.FAILED


def test_finished_files_stay_finished_and_the_job_is_partially_failed(broker):
    job = job_with([1, 2])
    done = job.subjobs.get(sequence=1)
    type(done).objects.filter(pk=done.pk).update(status=JobStatus.FINISHED)
    Item.objects.filter(subjob=done).update(status=JobStatus.FINISHED, finished_at=timezone.now())

    jobs_past_deadline_fail()

    status, items, _ = outcome(job)
    assert status == JobStatus.PARTIALLY_FAILED
    assert items == {(JobStatus.FINISHED, ""), (JobStatus.FAILED, "deadline exceeded")}
    assert job.files_done == 1 and job.files_failed == 2


def test_a_running_subjob_is_left_to_its_worker_and_the_job_waits_for_it(broker):
    job = job_with([1, 1])
    running = job.subjobs.get(sequence=1)
    type(running).objects.filter(pk=running.pk).update(status=JobStatus.RUNNING, worker="w@h:1")
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING)

    assert jobs_past_deadline_fail() == 1

    status, items, _ = outcome(job)
    assert status == JobStatus.RUNNING  # its worker stops at the deadline and rolls it up
    assert items == {(JobStatus.NOT_STARTED, ""), (JobStatus.FAILED, "deadline exceeded")}
    assert jobs_past_deadline_fail() == 0  # nothing queued is left: the pass skips it


def test_jobs_before_their_deadline_without_one_or_being_cancelled_are_untouched(broker):
    later = job_with([2], deadline=timedelta(hours=1))
    none = job_with([2], deadline=None)
    cancelling = job_with([2], status=JobStatus.CANCELLING)

    assert jobs_past_deadline_fail() == 0

    for job in (later, none):
        assert outcome(job)[0] == JobStatus.NOT_STARTED
    assert outcome(cancelling)[0] == JobStatus.CANCELLING
    assert not Item.objects.filter(status=JobStatus.FAILED).exists()


def test_the_pass_fails_items_in_bulk_whatever_their_number(broker):
    few = [job_with([2]) for _ in range(2)]
    with CaptureQueriesContext(connection) as small:
        jobs_past_deadline_fail()
    many = [job_with([40, 40]) for _ in range(2)]
    with CaptureQueriesContext(connection) as large:
        jobs_past_deadline_fail()

    assert len(large.captured_queries) == len(small.captured_queries)
    for job in few + many:
        assert outcome(job)[0] == JobStatus.FAILED


def test_a_retry_gets_as_long_as_the_job_had_from_the_retry(broker):
    job = job_with([2])
    an_hour_ago = timezone.now() - timedelta(hours=1)
    Job.objects.filter(pk=job.pk).update(
        created_at=an_hour_ago, deadline_at=an_hour_ago + timedelta(minutes=5)
    )
    jobs_past_deadline_fail()

    before = timezone.now()
    job_retry(job=Job.objects.get(pk=job.pk))
    after = timezone.now()

    job.refresh_from_db()
    assert job.status == JobStatus.NOT_STARTED
    assert before + timedelta(minutes=5) <= job.deadline_at <= after + timedelta(minutes=5)
    assert jobs_past_deadline_fail() == 0
    assert job.items.filter(status=JobStatus.NOT_STARTED).count() == 2


def test_storelimit_sets_and_removes_a_stores_default_deadline():
    store = StoreFactory()
    out = StringIO()

    call_command("storelimit", store.slug, "--deadline", "PT2H", stdout=out)
    assert Store.objects.get(pk=store.pk).default_deadline == timedelta(hours=2)
    assert "give up after PT2H" in out.getvalue()
    call_command("storelimit", store.slug, "--deadline", "600")
    assert Store.objects.get(pk=store.pk).default_deadline == timedelta(minutes=10)
    call_command("storelimit", store.slug, "--no-deadline")
    assert Store.objects.get(pk=store.pk).default_deadline is None
    with pytest.raises(CommandError, match="--deadline must be a positive whole number"):
        call_command("storelimit", store.slug, "--deadline", "soon")


def test_addstore_takes_a_default_deadline(tmp_path):
    call_command(
        "addstore",
        "cold",
        "--archive-root",
        str(tmp_path / "a"),
        "--staging-root",
        str(tmp_path / "s"),
        "--deadline",
        "P1D",
        stdout=StringIO(),
    )

    assert Store.objects.get(slug="cold").default_deadline == timedelta(days=1)
    with pytest.raises(CommandError, match="--deadline must be"):
        call_command(
            "addstore",
            "warm",
            "--archive-root",
            str(tmp_path / "b"),
            "--staging-root",
            str(tmp_path / "t"),
            "--deadline=-PT1H",
        )


def test_a_job_of_a_store_with_a_default_deadline_counts_it_from_its_creation(store):
    Store.objects.filter(pk=store.pk).update(default_deadline=timedelta(minutes=7))
    store.refresh_from_db()

    job = job_create_staging(
        owner=UserFactory(), store=store, files=[FileFactory(store=store)], source="dts"
    )

    assert Job.objects.get(pk=job.pk).deadline_at == job.created_at + timedelta(minutes=7)


def test_a_worker_that_takes_a_subjob_past_its_deadline_stages_nothing(store, archive_files):
    archive_files({"a.txt": b"a", "b.txt": b"b"})
    job = task_perform(
        owner=UserFactory(),
        store=store,
        task_name="stage",
        source="api",
        parameters={"paths": ["a.txt", "b.txt"]},
    )
    Job.objects.filter(pk=job.pk).update(deadline_at=timezone.now() + PAST)

    (subjob,) = job.subjobs.all()
    final = subjob_run(subjob_id=subjob.pk, worker="w@h:1", task_id="t", work_for=item_work_for)

    assert final == JobStatus.FAILED
    status, items, _ = outcome(job)
    assert status == JobStatus.FAILED
    assert items == {(JobStatus.FAILED, "deadline exceeded")}
    assert not job.items.filter(started_at__isnull=False).exists()
    assert not any(Path(store.staging_root).iterdir())
