"""The job engine under real faults: killed workers, an emptied broker, cancels, duplicate
deliveries, shared pins and a job spread over two workers. Real `celery worker` and `celery beat`
processes on Redis and the test database."""

import os
import signal
import time
from pathlib import Path

import pytest
from celery import current_app

from staging.models import Item, Job, JobStatus, Pin, Store, SubJob
from staging.services.dispatch import subjobs_dispatch
from staging.services.jobs import job_cancel, job_create_staging
from staging.services.releases import job_release
from tests.factories import UserFactory
from tests.workers import wait_for_job, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FAST_RECOVERY = {
    "STAGING_LEASE_SECONDS": "3",
    "STAGING_REDISPATCH_AFTER_SECONDS": "1",
    "REAPER_INTERVAL_SECONDS": "1",
    "RECONCILER_INTERVAL_SECONDS": "1",
}


def slow_store(store: Store, latency_ms: int) -> Store:
    Store.objects.filter(pk=store.pk).update(simulated_latency_ms=latency_ms)
    store.refresh_from_db()
    return store


def assert_staged_intact(store: Store, job: Job) -> None:
    staging = Path(store.staging_root)
    for item in job.items.all():
        assert (staging / item.path).read_bytes() == (
            Path(store.archive_root) / item.path
        ).read_bytes()
    assert list(staging.rglob(".stagingsvc-*")) == []


def create_job(store: Store, files, owner=None) -> Job:
    return job_create_staging(owner=owner or UserFactory(), store=store, files=files, source="api")


def running_with_progress(job: Job) -> bool:
    return SubJob.objects.filter(job=job, status=JobStatus.RUNNING, files_done__gte=1).exists()


@pytest.mark.parametrize("victim", ["pool process", "whole worker"])
def test_a_job_survives_a_worker_killed_mid_subjob(
    store, archive_files, start_worker, start_beat, victim, settings
):
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 100}
    files = archive_files({f"f{n}.bin": os.urandom(256 * 1024 + n) for n in range(12)})
    slow_store(store, 300)
    doomed = start_worker(concurrency=1, **FAST_RECOVERY)
    job = create_job(store, files)
    wait_until(lambda: running_with_progress(job), timeout=60, what="progress")

    killed_at = time.monotonic()
    if victim == "pool process":
        os.kill(doomed.child_pids()[0], signal.SIGKILL)
    else:
        os.killpg(doomed.pid, signal.SIGKILL)
        start_worker(concurrency=1, **FAST_RECOVERY)
        start_beat(**FAST_RECOVERY)

    job = wait_for_job(job, timeout=120)
    print(f"\n{victim} killed: job finished {time.monotonic() - killed_at:.1f}s later")
    assert job.status == JobStatus.FINISHED
    assert SubJob.objects.get(job=job).attempts == 2
    assert_staged_intact(store, job)


def test_jobs_queued_in_an_emptied_broker_still_finish(
    store, archive_files, broker, start_worker, start_beat
):
    files = archive_files({f"q{n}.txt": f"payload {n}".encode() for n in range(6)})
    jobs = [create_job(store, [f]) for f in files]
    subjobs_dispatch()  # no worker yet: the dispatch pass their wake asked for, run here
    assert broker.llen(f"{broker_prefix()}staging") == 6

    broker.flush_test_keys()  # what a Redis restart without persistence does to the queue
    assert broker.llen(f"{broker_prefix()}staging") == 0
    start_worker(concurrency=2, **FAST_RECOVERY)
    start_beat(**FAST_RECOVERY)

    for job in jobs:
        assert wait_for_job(job, timeout=90).status == JobStatus.FINISHED
    # Only once every job ended: a temporary of a job still copying is no leftover.
    for job in jobs:
        assert_staged_intact(store, job)


def broker_prefix() -> str:
    from django.conf import settings

    return settings.BROKER_KEY_PREFIX


def test_a_running_job_can_be_cancelled_without_partial_files_or_harm_to_others(
    store, archive_files, start_worker, tmp_path, settings
):
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 100}
    files = archive_files({f"slow/{n}.bin": os.urandom(100_000) for n in range(20)})
    slow_store(store, 300)
    other_root = tmp_path / "other"
    other = Store.objects.create(
        slug="other",
        archive_root=str(other_root / "archive"),
        staging_root=str(other_root / "staging"),
    )
    (other_root / "staging").mkdir(parents=True)
    other_files = archive_files({"keep/a.txt": b"a", "keep/b.txt": b"b"}, other)
    start_worker(concurrency=2)
    doomed = create_job(store, files)
    bystander = create_job(other, other_files)
    wait_until(lambda: running_with_progress(doomed), timeout=60, what="progress")

    assert job_cancel(job=doomed).status in (JobStatus.CANCELLING, JobStatus.CANCELLED)
    doomed = wait_for_job(doomed, timeout=60)

    assert doomed.status == JobStatus.CANCELLED
    finished = set(doomed.items.filter(status=JobStatus.FINISHED).values_list("path", flat=True))
    cancelled = doomed.items.filter(status=JobStatus.CANCELLED).count()
    assert cancelled > 0 and len(finished) + cancelled == 20
    staging = Path(store.staging_root)
    on_disk = {p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file()}
    assert on_disk == finished  # nothing half-written, no temporary file
    for path in finished:
        assert (staging / path).read_bytes() == (Path(store.archive_root) / path).read_bytes()
    assert wait_for_job(bystander).status == JobStatus.FINISHED
    assert_staged_intact(other, bystander)


def test_a_subjob_delivered_twice_at_once_copies_each_file_once(
    store, archive_files, start_worker, settings
):
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 100}
    files = archive_files({f"d{n}.bin": os.urandom(50_000) for n in range(10)})
    slow_store(store, 100)
    job = create_job(store, files)
    subjob = SubJob.objects.get(job=job)
    subjobs_dispatch()  # no worker yet: the dispatch pass its wake asked for, run here
    current_app.send_task("tasks.staging.stage_subjob", args=[subjob.pk])  # the duplicate

    start_worker(concurrency=2)
    job = wait_for_job(job)

    assert job.status == JobStatus.FINISHED
    assert SubJob.objects.get(pk=subjob.pk).attempts == 1
    assert set(Item.objects.filter(job=job).values_list("attempts", flat=True)) == {1}
    assert_staged_intact(store, job)


def test_jobs_share_a_staged_copy_until_both_release_it(store, archive_files, start_worker):
    (shared,) = archive_files({"shared/genome.fa": b">chr1\nACGT\n"})
    start_worker(concurrency=1)
    first = wait_for_job(create_job(store, [shared]))
    second = wait_for_job(create_job(store, [shared]))
    staged = Path(store.staging_root) / "shared/genome.fa"
    assert first.status == second.status == JobStatus.FINISHED
    assert Pin.objects.filter(path="shared/genome.fa").count() == 2

    def sweep() -> int:
        task = current_app.send_task("tasks.maintenance.sweep_unpinned_copies")
        return task.get(timeout=60)["removed"]

    assert job_release(job=first) == 1
    assert sweep() == 0
    assert staged.read_bytes() == b">chr1\nACGT\n"

    assert job_release(job=second) == 1
    assert sweep() == 1
    assert not staged.exists()
    assert not Pin.objects.filter(path="shared/genome.fa").exists()


def test_a_job_of_hundreds_of_files_spreads_over_two_workers(
    store, archive_files, start_worker, settings
):
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 10}
    files = archive_files({f"many/{n:03}.txt": f"{n}".encode() for n in range(300)})
    slow_store(store, 10)
    first, second = start_worker(concurrency=1), start_worker(concurrency=1)
    job = wait_for_job(create_job(store, files), timeout=180)

    assert job.status == JobStatus.FINISHED
    assert job.subjobs.count() == 30
    nodes = {w.rpartition(":")[0] for w in job.subjobs.values_list("worker", flat=True)}
    assert nodes == {
        first.name.replace("%h", os.uname().nodename),
        second.name.replace("%h", os.uname().nodename),
    }
    assert (job.files_done, job.bytes_done) == (300, sum(f.size for f in files))


def test_a_worker_told_to_stop_hands_its_subjob_to_another(
    store, archive_files, start_worker, settings
):
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 100}
    files = archive_files({f"h{n}.bin": os.urandom(10_000) for n in range(10)})
    slow_store(store, 400)
    leaving = start_worker(concurrency=1)
    job = create_job(store, files)
    wait_until(lambda: running_with_progress(job), timeout=60, what="progress")

    leaving.process.send_signal(signal.SIGTERM)  # the main process only, as Kubernetes does
    leaving.process.wait(timeout=30)
    subjob = SubJob.objects.get(job=job)
    assert subjob.status == JobStatus.NOT_STARTED, leaving.log()
    assert subjob.files_done < 10
    start_worker(concurrency=1)

    job = wait_for_job(job)
    assert job.status == JobStatus.FINISHED
    assert SubJob.objects.get(job=job).attempts == 2
    # Only the file being copied at the moment of the hand-back is copied again.
    attempts = sorted(job.items.values_list("attempts", flat=True))
    assert attempts[:-1] == [1] * 9 and attempts[-1] in (1, 2)
    assert_staged_intact(store, job)
