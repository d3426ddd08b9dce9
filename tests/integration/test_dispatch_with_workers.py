"""The dispatcher with real `celery worker` and `celery beat` processes on Redis and the test
database: a store's limit and an owner's limit hold with more worker processes than the limit,
and the broker holds no more than the in-flight bound however much waits in the database.
Rows and queue lengths are sampled throughout each run."""

import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import override_settings

from staging.models import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    AccountLimits,
    Job,
    JobStatus,
    Store,
    SubJob,
)
from staging.services.jobs import job_create_staging
from staging.services.recovery import broker_lost_its_data
from tests.factories import UserFactory
from tests.workers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FAST_DISPATCH = {"DISPATCH_INTERVAL_SECONDS": "1", "RECONCILER_INTERVAL_SECONDS": "1"}


@pytest.fixture
def one_file_subjobs(settings):
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 1}


def slow(store: Store, latency_ms: int, **fields) -> Store:
    Store.objects.filter(pk=store.pk).update(simulated_latency_ms=latency_ms, **fields)
    store.refresh_from_db()
    return store


def sample_until_done(jobs: list[Job], sample, *, timeout: float = 120) -> list:
    """Call ``sample()`` every 20 ms until every job is terminal; returns the samples."""
    samples = []
    deadline = time.monotonic() + timeout
    while Job.objects.filter(pk__in=[j.pk for j in jobs], status__in=ACTIVE_STATUSES).exists():
        assert time.monotonic() < deadline, "jobs did not finish"
        samples.append(sample())
        time.sleep(0.02)
    return samples


def running(**filters) -> int:
    return SubJob.objects.filter(status=JobStatus.RUNNING, **filters).count()


def test_a_store_limit_of_two_holds_with_four_worker_processes(
    store, archive_files, start_worker, start_beat, one_file_subjobs
):
    files = archive_files({f"tape/{n}.bin": b"x" * (1000 + n) for n in range(12)})
    slow(store, 300, max_active=2)
    for _ in range(2):
        start_worker(concurrency=2, **FAST_DISPATCH)
    start_beat(**FAST_DISPATCH)

    job = job_create_staging(owner=UserFactory(), store=store, files=files, source="api")
    samples = sample_until_done([job], lambda: running(job__store=store))

    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED
    assert max(samples) == 2  # the limit is used, and never passed
    assert job.subjobs.count() == 12


def test_an_owner_limit_holds_across_stores(
    store, tape_store, archive_files, start_worker, start_beat, one_file_subjobs
):
    owner = UserFactory()
    AccountLimits.objects.create(user=owner, max_active_subjobs=1)
    disk_files = archive_files({f"a/{n}.bin": b"a" * (100 + n) for n in range(4)})
    tape_files = archive_files({f"b/{n}.bin": b"b" * (100 + n) for n in range(4)}, tape_store)
    slow(store, 200)
    slow(tape_store, 200)
    start_worker(concurrency=4, **FAST_DISPATCH)
    start_beat(**FAST_DISPATCH)

    jobs = [
        job_create_staging(owner=owner, store=s, files=f, source="api")
        for s, f in ((store, disk_files), (tape_store, tape_files))
    ]
    samples = sample_until_done(jobs, lambda: running(job__owner=owner))

    assert {j.status for j in Job.objects.filter(pk__in=[j.pk for j in jobs])} == {
        JobStatus.FINISHED
    }
    assert max(samples) == 1


def test_the_broker_holds_no_more_than_the_in_flight_bound_with_many_waiting(
    store, archive_files, broker, start_worker, start_beat, one_file_subjobs
):
    files = archive_files({f"many/{n}.bin": b"m" * (10 + n) for n in range(60)})
    slow(store, 50)
    bound = {"STAGING_DISPATCH_MAX_IN_FLIGHT": "3", **FAST_DISPATCH}
    start_worker(concurrency=2, **bound)
    start_beat(**bound)
    queue = f"{django_settings.BROKER_KEY_PREFIX}staging"
    # A broker that has been up a while: the reconciler's first pass on a fresh one
    # republishes every dispatched sub-job (see subjobs_reconcile), on purpose.
    broker_lost_its_data()

    jobs = [
        job_create_staging(owner=UserFactory(), store=store, files=files[:30], source="api"),
        job_create_staging(owner=UserFactory(), store=store, files=files[30:], source="api"),
    ]
    wait_until(lambda: broker.llen(queue) > 0 or running() > 0, what="the first dispatch")
    samples = sample_until_done(jobs, lambda: (broker.llen(queue), running()))

    assert max(length for length, _ in samples) <= 3
    assert max(length + busy for length, busy in samples) <= 3 + 1  # a sample spans a take
    assert {j.status for j in Job.objects.filter(pk__in=[j.pk for j in jobs])} == {
        JobStatus.FINISHED
    }


def test_a_small_job_behind_a_big_one_of_another_owner_finishes_first(
    store, archive_files, start_worker, start_beat, one_file_subjobs
):
    files = archive_files({f"f/{n}.bin": b"f" * (100 + n) for n in range(64)})
    slow(store, 150)
    bound = {"STAGING_DISPATCH_MAX_IN_FLIGHT": "3", **FAST_DISPATCH}
    start_worker(concurrency=2, **bound)
    start_beat(**bound)

    big = job_create_staging(owner=UserFactory(), store=store, files=files[:60], source="api")
    wait_until(lambda: running(job=big) > 0, what="the big job to start")
    small = job_create_staging(owner=UserFactory(), store=store, files=files[60:], source="api")
    wait_until(
        lambda: Job.objects.filter(pk=small.pk, status=JobStatus.FINISHED).exists(),
        timeout=60,
        what="the small job",
    )

    big.refresh_from_db()
    assert big.files_done < 30, big.files_done  # FIFO would have finished the big job first
    assert sample_until_done([big], lambda: None) is not None
    big.refresh_from_db()
    assert big.status == JobStatus.FINISHED


def staged_once(job: Job) -> None:
    """Every item of ``job`` FINISHED, each once, its copy on disk; the counts agree."""
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED
    items = list(job.items.all())
    assert len({item.path for item in items}) == len(items) == job.files_total
    assert {item.status for item in items} == {JobStatus.FINISHED}
    assert job.files_done == job.files_total
    staging_root = Path(job.store.staging_root)
    assert all((staging_root / item.path.lstrip("/")).is_file() for item in items)


def test_a_running_sub_job_gives_way_to_another_owners_few_files(
    store, archive_files, start_worker, start_beat
):
    # A's two sub-jobs of 50 files take 5 s each and hold both slots of the store.
    files = archive_files({f"g/{n}.bin": b"g" * (100 + n) for n in range(103)})
    slow(store, 100, max_active=2)
    start_worker(concurrency=2, **FAST_DISPATCH)
    start_beat(**FAST_DISPATCH)

    big = job_create_staging(owner=UserFactory(), store=store, files=files[:100], source="api")
    wait_until(lambda: running(job=big) == 2, what="A's job to hold both slots")
    wait_until(lambda: big.items.filter(status=JobStatus.FINISHED).exists(), what="A's files")
    small = job_create_staging(owner=UserFactory(), store=store, files=files[100:], source="api")
    wait_until(
        lambda: Job.objects.filter(pk=small.pk, status__in=TERMINAL_STATUSES).exists(),
        timeout=60,
        what="B's job",
    )

    # B did not wait for one of A's sub-jobs to end: one of them gave way to it.
    assert not big.subjobs.filter(status=JobStatus.FINISHED).exists()
    assert Job.objects.get(pk=big.pk).status == JobStatus.RUNNING
    staged_once(small)
    sample_until_done([big], lambda: None)
    staged_once(big)
    assert big.subjobs.filter(attempts__gt=1).exists()  # the rest of one ran again


def test_one_owner_alone_never_splits_a_sub_job(store, archive_files, start_worker, start_beat):
    files = archive_files({f"h/{n}.bin": b"h" * (100 + n) for n in range(12)})
    slow(store, 50, max_active=2)
    start_worker(concurrency=2, **FAST_DISPATCH)
    start_beat(**FAST_DISPATCH)

    owner = UserFactory()
    with override_settings(STAGING={**django_settings.STAGING, "SUBJOB_MAX_FILES": 3}):
        jobs = [
            job_create_staging(owner=owner, store=store, files=part, source="api")
            for part in (files[:6], files[6:])
        ]
    sample_until_done(jobs, lambda: None)

    for job in jobs:
        staged_once(job)
    assert set(SubJob.objects.filter(job__in=jobs).values_list("attempts", flat=True)) == {1}
