"""The state machine and its repairs in real `celery worker` and `celery beat` processes on Redis
and the test database: leases kept by a heartbeat, a lost worker's sub-job resumed within the
lease, a cancel racing a warm-shutdown hand-back, a lost roll-up, a broker that lost its data."""

import os
import signal
import time

import pytest
from django.conf import settings

from staging.models import PENDING_STATUSES, Item, Job, JobStatus, SubJob
from staging.services.jobs import job_cancel, job_create
from tests.factories import UserFactory
from tests.integration.test_engine_recovery import (
    assert_staged_intact,
    create_job,
    running_with_progress,
    slow_store,
)
from tests.integration.test_metrics_and_logs_with_workers import (
    repairs_counted,
    start_metrics_worker,
)
from tests.workers import wait_for_job, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Every knob of recovery shortened, so each test takes seconds.
SHORT_LEASE = {
    "STAGING_LEASE_SECONDS": "3",
    "STAGING_HEARTBEAT_SECONDS": "0.5",
    "REAPER_INTERVAL_SECONDS": "1",
    "RECONCILER_INTERVAL_SECONDS": "1",
    "JANITOR_INTERVAL_SECONDS": "1",
}


def kill_and_wait_for_takeover(doomed, survivor, job: Job, *, timeout: float) -> float:
    """SIGKILL the whole ``doomed`` worker; wait until ``survivor`` holds the job's sub-job and
    return how many seconds that took."""
    os.killpg(doomed.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    survivor_node = survivor.name.replace("%h", os.uname().nodename)
    wait_until(
        lambda: SubJob.objects.filter(job=job, worker__startswith=survivor_node).exists(),
        timeout=timeout,
        what="another worker to take the sub-job",
    )
    return time.monotonic() - killed_at


def test_a_lease_renewed_by_its_heartbeat_survives_a_long_silent_step(
    store, archive_files, start_worker, start_beat
):
    (file,) = archive_files({"silent.bin": os.urandom(10_000)})
    # Three lease periods without a byte of progress (a slow recall, a long fsync).
    slow_store(store, 15_000)
    knobs = {**SHORT_LEASE, "STAGING_LEASE_SECONDS": "5", "STAGING_HEARTBEAT_SECONDS": "1"}
    start_worker(concurrency=1, **knobs)
    start_worker(concurrency=1, **knobs)
    start_beat(**knobs)

    job = wait_for_job(create_job(store, [file]), timeout=120)

    assert job.status == JobStatus.FINISHED
    subjob = SubJob.objects.get(job=job)
    assert (subjob.attempts, subjob.failures) == (1, 0)
    assert_staged_intact(store, job)


def test_a_killed_workers_subjob_is_resumed_by_another_within_the_lease(
    store, archive_files, start_worker, start_beat, settings
):
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 100}
    # Long enough (40 files, 0.5 s each) that a second worker and beat start before it ends.
    files = archive_files({f"k{n}.bin": os.urandom(50_000) for n in range(40)})
    slow_store(store, 500)
    knobs = {**SHORT_LEASE, "STAGING_LEASE_SECONDS": "6", "STAGING_HEARTBEAT_SECONDS": "2"}
    doomed = start_worker(concurrency=1, **knobs)
    job = create_job(store, files)
    wait_until(lambda: running_with_progress(job), timeout=60, what="progress")
    survivor = start_worker(concurrency=1, **knobs)
    start_beat(**knobs)

    resumed_after = kill_and_wait_for_takeover(doomed, survivor, job, timeout=60)
    print(f"\nworker SIGKILLed: sub-job resumed {resumed_after:.1f}s later (lease 6 s)")

    job = wait_for_job(job, timeout=120)
    assert job.status == JobStatus.FINISHED
    subjob = SubJob.objects.get(job=job)
    assert (subjob.attempts, subjob.failures) == (2, 1)
    # Resumed after the last finished file, not from the start.
    assert sorted(job.items.values_list("attempts", flat=True))[0] == 1
    assert_staged_intact(store, job)


def test_a_cancel_racing_a_warm_shutdown_hand_back_ends_cancelled(
    store, archive_files, start_worker, settings
):
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 100}
    files = archive_files({f"c{n}.bin": os.urandom(10_000) for n in range(6)})
    slow_store(store, 3_000)
    leaving = start_worker(concurrency=1)
    job = create_job(store, files)
    wait_until(
        lambda: SubJob.objects.filter(job=job, status=JobStatus.RUNNING).exists(),
        timeout=60,
        what="the sub-job to start",
    )

    # The cancel lands while the sub-job runs (nothing queued to cancel), and the worker is
    # told to stop before its next progress write could see it: the sub-job is handed back.
    assert job_cancel(job=job).status == JobStatus.CANCELLING
    leaving.process.send_signal(signal.SIGTERM)
    leaving.process.wait(timeout=30)
    start_worker(concurrency=1)

    job = wait_for_job(job, timeout=60)
    assert job.status == JobStatus.CANCELLED
    assert not Item.objects.filter(job=job, status__in=PENDING_STATUSES).exists()


def test_the_janitor_on_beat_rolls_up_a_job_whose_roll_up_was_lost(
    store, archive_files, start_worker, start_beat
):
    files = archive_files({"r.txt": b"rolled"})
    start_worker(concurrency=1)
    job = wait_for_job(create_job(store, files))
    # What a crash between the last sub-job's end and the job's roll-up leaves behind.
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, finished_at=None)

    start_beat(**SHORT_LEASE)

    assert wait_for_job(job, timeout=60).status == JobStatus.FINISHED


def test_jobs_queued_in_a_broker_that_lost_its_data_are_republished_at_once(
    store, archive_files, broker, start_worker, start_beat
):
    files = archive_files({f"m{n}.txt": f"payload {n}".encode() for n in range(4)})
    jobs = [create_job(store, [f]) for f in files]
    marker = settings.BROKER_KEY_PREFIX + settings.STAGING["BROKER_MARKER_KEY"]
    # Settings as shipped (republish age a minute, reconciler every 10 s): only the lost
    # marker can explain a recovery within a reconciler period or two.
    start_worker(concurrency=1, queues="control")
    start_beat()
    wait_until(lambda: broker.exists(marker), timeout=60, what="the broker marker")

    broker.flush_test_keys()  # what a Redis restart without persistence does
    flushed_at = time.monotonic()
    start_worker(concurrency=2, queues="staging")

    for job in jobs:
        assert wait_for_job(job, timeout=40).status == JobStatus.FINISHED
    # Only once every job ended: a temporary of a job still copying is no leftover.
    for job in jobs:
        assert_staged_intact(store, job)
    print(
        f"\ndefaults: broker emptied, every job finished {time.monotonic() - flushed_at:.1f}s later"
    )


def test_on_default_settings_a_lost_workers_subjob_is_resumed_within_a_minute(
    store, archive_files, start_worker, start_beat, settings
):
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 100}
    files = archive_files({f"d{n}.bin": os.urandom(20_000) for n in range(60)})
    slow_store(store, 1_000)
    doomed = start_worker(concurrency=1)  # lease, heartbeat, reaper and janitor as shipped
    job = create_job(store, files)
    wait_until(lambda: running_with_progress(job), timeout=60, what="progress")
    survivor = start_worker(concurrency=1)
    start_beat()

    # A minute, as promised, plus slack for a loaded test machine.
    resumed_after = kill_and_wait_for_takeover(doomed, survivor, job, timeout=75)
    print(f"\ndefaults: sub-job resumed {resumed_after:.1f}s after SIGKILL")
    assert SubJob.objects.get(job=job).failures == 1


def test_the_janitors_repairs_are_counted_in_the_workers_metrics(
    store, archive_files, start_worker, tmp_path
):
    files = archive_files({"stuck.txt": b"s"})
    job = create_job(store, files)
    # What a cancel request that died right after its first write leaves behind.
    Job.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLING)
    _, url = start_metrics_worker(
        start_worker, tmp_path / "prometheus", concurrency=1, queues="control"
    )

    assert repairs_counted(url, "janitor", "cancelled") == 1
    assert wait_for_job(job, timeout=10).status == JobStatus.CANCELLED


def test_a_subjob_whose_work_keeps_raising_fails_with_its_error_instead_of_looping(
    store, archive_files, start_worker, start_beat
):
    (file,) = archive_files({"loop.txt": b"l"})
    # A checksum job whose parameters lack the algorithm (written by another release): its
    # work raises KeyError on every attempt, an error no retry can mend.
    job = job_create(
        owner=UserFactory(),
        store=store,
        task="checksum",
        source="api",
        items=[Item(file=file, path=file.path, size=file.size)],
        parameters={},
    )
    knobs = {**SHORT_LEASE, "STAGING_REDISPATCH_AFTER_SECONDS": "1"}
    start_worker(concurrency=1, **knobs)
    start_beat(**knobs)

    job = wait_for_job(job, timeout=90)
    assert job.status == JobStatus.FAILED
    subjob = SubJob.objects.get(job=job)
    assert (subjob.status, subjob.failures) == (JobStatus.FAILED, settings.STAGING["MAX_ATTEMPTS"])
    assert "KeyError" in subjob.error and "algorithm" in subjob.error
    assert "KeyError" in job.items.get().error
