"""Releases, cancels and dispatch passes never wait behind staging: with real workers shaped as
the Procfile runs them (one on the staging queue, one of its own on the control queue) and every
staging process busy on slow sub-jobs, a release job ends and a cancel's freed slot is filled
while the staging work still runs. No beat runs: only wakes and the ends of sub-jobs dispatch."""

import pytest

from staging.models import Job, JobStatus, SubJob
from staging.services.jobs import job_cancel, job_create, job_create_staging
from tests.factories import UserFactory
from tests.workers import wait_for_job, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Long enough per file that the staging work is still going when the checks are made.
SLOW_FILE_MS = 4000


@pytest.fixture
def one_file_subjobs(settings):
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 1}


@pytest.fixture
def busy_store(store, archive_files, one_file_subjobs):
    """The store, its files slow to stage, and four of them to stage."""
    files = archive_files({f"slow/{n}.bin": b"s" * (100 + n) for n in range(4)})
    store.simulated_latency_ms = SLOW_FILE_MS
    store.save(update_fields=["simulated_latency_ms"])
    store.slow_files = files
    return store


def start_procfile_workers(start_worker, **env: str) -> None:
    start_worker(concurrency=1, queues="staging", **env)
    start_worker(concurrency=1, queues="control", **env)


def running(job: Job) -> int:
    return SubJob.objects.filter(job=job, status=JobStatus.RUNNING).count()


def test_a_release_ends_while_every_staging_process_is_busy(busy_store, start_worker):
    start_procfile_workers(start_worker)
    owner = UserFactory()
    staging = job_create_staging(
        owner=owner, store=busy_store, files=busy_store.slow_files, source="api"
    )
    wait_until(lambda: running(staging) == 1, what="the only staging process to be busy")

    release = job_create(owner=owner, store=busy_store, task="release", source="api", items=[])
    release = wait_for_job(release, timeout=60)

    assert release.status == JobStatus.FINISHED
    staging.refresh_from_db()
    # Four slow files on one staging process: the release did not wait for them.
    assert staging.status == JobStatus.RUNNING
    assert staging.files_done < len(busy_store.slow_files)


def test_a_cancel_fills_the_freed_slot_at_once_without_beat(busy_store, start_worker, settings):
    # Both jobs wait before any worker starts, so the one pass their wakes ask for is over once
    # the first job holds both slots (it goes first: priority 5); nothing else dispatches until
    # a sub-job ends, four seconds later.
    first = job_create_staging(
        owner=UserFactory(), store=busy_store, files=busy_store.slow_files[:3], source="api"
    )
    Job.objects.filter(pk=first.pk).update(priority=5)
    second = job_create_staging(
        owner=UserFactory(), store=busy_store, files=busy_store.slow_files[3:], source="api"
    )
    start_procfile_workers(start_worker, STAGING_DISPATCH_MAX_IN_FLIGHT="2")
    wait_until(lambda: running(first) == 1, what="the first job to start")
    assert first.subjobs.filter(dispatched_at__isnull=False).count() == 2  # both slots
    running_subjob = first.subjobs.get(status=JobStatus.RUNNING)
    assert not second.subjobs.filter(dispatched_at__isnull=False).exists()

    job_cancel(job=first)  # frees the queued sub-job's slot

    wait_until(
        lambda: second.subjobs.filter(dispatched_at__isnull=False).exists(),
        timeout=30,
        what="the second job to get the freed slot",
    )
    # It got the slot from the cancel's wake, not from the running sub-job's end.
    running_subjob.refresh_from_db()
    assert running_subjob.status == JobStatus.RUNNING
    assert wait_for_job(second).status == JobStatus.FINISHED
    assert wait_for_job(first).status == JobStatus.CANCELLED
