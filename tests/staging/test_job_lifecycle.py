"""The job state machine: compare-and-set transitions, roll-up, cancel, retry, leases, reaper,
pins. Services are called directly; the integration tier runs the same code in real workers."""

import os
import socket
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from staging.errors import ConflictError
from staging.models import Item, Job, JobStatus, Pin, SubJob
from staging.selectors import job_progress
from staging.services.execution import subjob_claim, subjob_run
from staging.services.jobs import _Slicer, job_cancel, job_retry, job_rollup
from staging.services.jobs import job_create_staging as create
from staging.services.recovery import (
    WORKER_LOST,
    staged_copies_sweep,
    subjobs_reap_expired,
)
from staging.services.releases import job_release
from staging.storage import remove_dead_temporaries
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def run_all(job: Job) -> Job:
    for subjob in job.subjobs.filter(status=JobStatus.NOT_STARTED):
        subjob_run(subjob_id=subjob.pk, worker="node@host:1", task_id="t")
    job.refresh_from_db()
    return job


def test_sizes_split_into_subjobs_by_count_and_bytes(settings):
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 3, "SUBJOB_MAX_BYTES": 100}
    assert slices_of([10, 10, 10, 10]) == [1, 1, 1, 2]
    assert slices_of([60, 60, 500, 1]) == [1, 2, 3, 4]


def slices_of(sizes: list[int], **options) -> list[int]:
    """The slice (sub-job, numbered from 1) each item is placed in, in request order."""
    slicer = _Slicer(**options)
    return [slicer.place(size) for size in sizes]


def test_a_hard_link_job_is_split_into_fewer_larger_even_subjobs(settings):
    settings.STAGING = {
        **settings.STAGING,
        "SUBJOB_MAX_FILES": 2,
        "SUBJOB_MAX_LINKS": 4,
        "SUBJOB_MAX_BYTES": 100,
    }
    # Five links: two sub-jobs of 3 and 2, not 4 and a last one of 1 waiting for a worker.
    assert slices_of([1] * 5, linked=True, expected=5) == [1, 1, 1, 2, 2]
    # Streamed (the count unknown while placing): as many as the bound allows.
    assert slices_of([1] * 5, linked=lambda: True) == [1, 1, 1, 1, 2]
    # The byte bound still holds.
    assert slices_of([60, 60, 1], linked=True, expected=3) == [1, 2, 2]
    assert slices_of([1] * 5, linked=False, expected=5) == [1, 1, 2, 2, 3]


def subjob_sizes(job: Job) -> list[int]:
    return list(job.subjobs.order_by("sequence").values_list("files_total", flat=True))


def test_a_job_of_a_hard_link_store_gets_link_sized_subjobs(store, archive_files, settings):
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 2, "SUBJOB_MAX_LINKS": 4}
    files = archive_files({f"f{i}.txt": b"x" for i in range(6)})
    copied = create(owner=UserFactory(), store=store, files=files, source="api")
    store.hard_link = True
    store.save()
    linked = create(owner=UserFactory(), store=store, files=files, source="api")
    assert subjob_sizes(copied) == [2, 2, 2]
    assert subjob_sizes(linked) == [3, 3]
    # Items that wait for something first (a recall, here simulated) are not cheap links.
    store.simulated_latency_ms = 5
    store.save()
    waiting = create(owner=UserFactory(), store=store, files=files, source="api")
    assert subjob_sizes(waiting) == [2, 2, 2]


def test_a_job_whose_files_all_arrive_is_finished_with_consistent_counts(staged_job, store):
    job = run_all(staged_job())
    assert job.status == JobStatus.FINISHED
    assert (job.files_done, job.files_failed, job.bytes_done) == (2, 0, 9)
    assert job.started_at <= job.finished_at
    assert (Path(store.staging_root) / "b.txt").read_bytes() == b"beta"


def test_some_failed_files_make_the_job_partially_failed(staged_job, store):
    job = staged_job()
    (Path(store.archive_root) / "a.txt").unlink()
    job = run_all(job)
    assert job.status == JobStatus.PARTIALLY_FAILED
    assert (job.files_done, job.files_failed) == (1, 1)
    assert job.items.get(path="a.txt").error.startswith("source file not found")


def test_no_file_arriving_makes_the_job_failed(staged_job, store):
    job = staged_job()
    for name in ("a.txt", "b.txt"):
        (Path(store.archive_root) / name).unlink()
    assert run_all(job).status == JobStatus.FAILED


def test_a_changed_source_size_fails_the_item_without_retries(staged_job, store):
    job = staged_job()
    (Path(store.archive_root) / "a.txt").write_bytes(b"longer than before")
    job = run_all(job)
    item = job.items.get(path="a.txt")
    assert (item.status, item.attempts) == (JobStatus.FAILED, 1)
    assert "catalogue says 5" in item.error


def test_rollup_waits_while_a_subjob_is_not_terminal(staged_job):
    job = staged_job()
    assert job_rollup(job_id=job.pk) is None
    assert Job.objects.get(pk=job.pk).status == JobStatus.NOT_STARTED


def test_a_second_claim_while_the_lease_lives_does_nothing(staged_job):
    subjob = staged_job().subjobs.get()
    assert subjob_claim(subjob_id=subjob.pk, worker="a@h:1", task_id="1") is not None
    assert subjob_claim(subjob_id=subjob.pk, worker="b@h:2", task_id="2") is None
    assert subjob_run(subjob_id=subjob.pk, worker="b@h:2", task_id="2") is None
    assert SubJob.objects.get(pk=subjob.pk).worker == "a@h:1"


def test_an_expired_lease_can_be_taken_over(staged_job):
    subjob = staged_job().subjobs.get()
    subjob_claim(subjob_id=subjob.pk, worker="a@h:1", task_id="1")
    SubJob.objects.filter(pk=subjob.pk).update(lease_expires_at=timezone.now() - timedelta(1))
    assert subjob_run(subjob_id=subjob.pk, worker="b@h:2", task_id="2") == JobStatus.FINISHED
    assert SubJob.objects.get(pk=subjob.pk).attempts == 2


def test_the_lease_of_a_dead_process_of_the_same_node_is_taken_at_once(staged_job):
    subjob = staged_job().subjobs.get()
    dead_pid = 2**22 + 17  # above the kernel's PID_MAX_LIMIT: never a live process
    subjob_claim(subjob_id=subjob.pk, worker=f"node@h:{dead_pid}", task_id="1")
    assert subjob_claim(subjob_id=subjob.pk, worker="other@h:5", task_id="2") is None
    assert subjob_claim(subjob_id=subjob.pk, worker=f"node@h:{os.getpid()}", task_id="3")


def test_cancelling_a_queued_job_cancels_it_and_its_items_at_once(staged_job):
    job = job_cancel(job=staged_job())
    assert job.status == JobStatus.CANCELLED
    assert set(job.items.values_list("status", flat=True)) == {JobStatus.CANCELLED}
    assert set(job.subjobs.values_list("status", flat=True)) == {JobStatus.CANCELLED}


def test_cancelling_twice_is_harmless_and_a_finished_job_cannot_be_cancelled(staged_job):
    job = job_cancel(job=staged_job())
    assert job_cancel(job=job).status == JobStatus.CANCELLED
    done = run_all(staged_job({"c.txt": b"c"}))
    with pytest.raises(ConflictError, match="FINISHED"):
        job_cancel(job=done)


def test_a_cancelled_job_is_not_started_by_a_late_delivery(staged_job):
    job = staged_job()
    subjob = job.subjobs.get()
    job_cancel(job=job)
    assert subjob_run(subjob_id=subjob.pk, worker="a@h:1", task_id="1") is None
    assert Item.objects.filter(job=job, status=JobStatus.FINISHED).count() == 0


def test_retry_reruns_only_the_failed_items_as_a_new_subjob(staged_job, store):
    job = staged_job()
    (Path(store.archive_root) / "a.txt").rename(Path(store.archive_root) / "a.moved")
    job = run_all(job)
    assert job.status == JobStatus.PARTIALLY_FAILED

    (Path(store.archive_root) / "a.moved").rename(Path(store.archive_root) / "a.txt")
    job = job_retry(job=job)
    assert job.status == JobStatus.NOT_STARTED
    assert job.subjobs.count() == 2
    retried = job.subjobs.get(sequence=2)
    assert list(retried.items.values_list("path", flat=True)) == ["a.txt"]

    job = run_all(job)
    assert job.status == JobStatus.FINISHED
    assert job.items.get(path="a.txt").attempts == 2
    assert job.items.get(path="b.txt").attempts == 1


def test_retry_is_refused_for_active_and_for_fully_finished_jobs(staged_job):
    with pytest.raises(ConflictError, match="still active"):
        job_retry(job=staged_job())
    with pytest.raises(ConflictError, match="no failed item"):
        job_retry(job=run_all(staged_job({"c.txt": b"c"})))


def test_the_reaper_requeues_an_expired_subjob_then_fails_it_as_worker_lost(staged_job, settings):
    settings.STAGING = {**settings.STAGING, "MAX_ATTEMPTS": 2}
    job = staged_job()
    subjob = job.subjobs.get()

    def expire_lease(worker: str) -> None:
        subjob_claim(subjob_id=subjob.pk, worker=worker, task_id="x")
        SubJob.objects.filter(pk=subjob.pk).update(lease_expires_at=timezone.now() - timedelta(1))

    expire_lease("gone@elsewhere:1")
    assert subjobs_reap_expired().requeued == 1
    assert SubJob.objects.get(pk=subjob.pk).status == JobStatus.NOT_STARTED

    expire_lease("gone@elsewhere:2")
    assert subjobs_reap_expired().failed == 1
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert set(job.items.values_list("error", flat=True)) == {WORKER_LOST.format(attempts=2)}


def test_pins_keep_a_shared_copy_until_every_job_released_it(staged_job, store):
    first = run_all(staged_job({"shared.txt": b"s"}))
    second = run_all(staged_job({"shared.txt": b"s"}))
    staged = Path(store.staging_root) / "shared.txt"

    job_release(job=first)
    assert staged_copies_sweep() == 0 and staged.exists()
    job_release(job=second)
    assert staged_copies_sweep() == 1 and not staged.exists()
    assert Pin.objects.count() == 0


def test_an_expired_pin_lets_the_sweeper_remove_the_copy(staged_job, store):
    job = run_all(staged_job({"old.txt": b"o"}))
    Pin.objects.filter(job=job).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert staged_copies_sweep() == 1
    assert not (Path(store.staging_root) / "old.txt").exists()


def test_leftovers_of_dead_copiers_are_removed_but_live_ones_kept(tmp_path):
    host = socket.gethostname()
    dead = tmp_path / f".stagingsvc-f.bin.{host}.{2**22 + 3}.part"
    live = tmp_path / f".stagingsvc-f.bin.{host}.{os.getppid()}.part"
    foreign = tmp_path / ".stagingsvc-f.bin.otherhost.1.part"
    for path in (dead, live, foreign):
        path.write_bytes(b"partial")
    assert remove_dead_temporaries(tmp_path / "f.bin") == 1
    assert not dead.exists() and live.exists() and foreign.exists()


def test_progress_reports_rate_and_time_left_of_a_running_job(staged_job):
    job = staged_job({"p.bin": b"x" * 1000})
    subjob = job.subjobs.get()
    subjob_claim(subjob_id=subjob.pk, worker="a@h:1", task_id="1")
    SubJob.objects.filter(pk=subjob.pk).update(bytes_per_second=250.0)
    Job.objects.filter(pk=job.pk).update(bytes_done=500)
    job.refresh_from_db()
    assert job_progress(job=job) == {
        "files_done": 0,
        "files_failed": 0,
        "files_total": 1,
        "bytes_done": 500,
        "bytes_total": 1000,
        "bytes_per_second": 250.0,
        "eta_seconds": 2.0,
    }


def test_a_released_pin_of_a_running_job_is_swept_only_once_the_job_ends(staged_job, store):
    job = staged_job({"late.txt": b"late"})
    job_release(job=job)
    assert staged_copies_sweep() == 0
    assert Pin.objects.filter(job=job).exists()  # kept: the copy may still land

    job = run_all(job)
    assert (Path(store.staging_root) / "late.txt").exists()
    assert staged_copies_sweep() == 1
    assert not (Path(store.staging_root) / "late.txt").exists()
