"""States the engine must never be stuck in, and counts it must never get wrong: cancels racing
hand-backs, lost roll-ups, crash loops, hand-backs that are not failures, cancelled items, a
cancel racing the roll-up, leases judged by the database's clock. Services are called directly;
tests/integration/test_engine_states.py runs the same paths in real workers."""

import errno
import os
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone

from staging.models import Item, Job, JobStatus, Pin, Store, SubJob
from staging.services import recovery
from staging.services.execution import (
    item_result_record,
    stage_item,
    subjob_claim,
    subjob_hand_back,
    subjob_run,
)
from staging.services.jobs import job_cancel, job_retry
from staging.services.recovery import (
    staged_copies_sweep,
    subjobs_reap_expired,
    subjobs_reconcile,
)
from staging.services.releases import job_release
from staging.services.tape import StageFile, stage_request_cancel, stage_request_create
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def status_of(row) -> str:
    return type(row).objects.values_list("status", flat=True).get(pk=row.pk)


def expire_lease(subjob: SubJob) -> None:
    SubJob.objects.filter(pk=subjob.pk).update(lease_expires_at=timezone.now() - timedelta(1))


# --- 1. Stuck CANCELLING --------------------------------------------------------------------


def test_a_subjob_handed_back_after_a_cancel_ends_cancelled_on_its_next_delivery(staged_job):
    job = staged_job()
    subjob = job.subjobs.get()
    subjob_claim(subjob_id=subjob.pk, worker="a@h:1", task_id="1")
    assert job_cancel(job=job).status == JobStatus.CANCELLING
    subjob_hand_back(subjob_id=subjob.pk, worker="a@h:1", publish=False)

    assert subjob_run(subjob_id=subjob.pk, worker="b@h:2", task_id="2") is None
    assert status_of(subjob) == JobStatus.CANCELLED
    assert status_of(job) == JobStatus.CANCELLED
    assert set(job.items.values_list("status", flat=True)) == {JobStatus.CANCELLED}


def test_a_second_cancel_finishes_what_a_hand_back_left_queued(staged_job):
    job = staged_job()
    subjob = job.subjobs.get()
    subjob_claim(subjob_id=subjob.pk, worker="a@h:1", task_id="1")
    job_cancel(job=job)
    subjob_hand_back(subjob_id=subjob.pk, worker="a@h:1", publish=False)

    assert job_cancel(job=job).status == JobStatus.CANCELLED


def test_the_janitor_cancels_a_cancelling_job_with_nothing_running(staged_job):
    job = staged_job()
    # What a cancel request that died right after its first write leaves behind.
    Job.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLING)

    assert recovery.jobs_janitor().cancelled == 1
    assert status_of(job) == JobStatus.CANCELLED
    assert set(job.subjobs.values_list("status", flat=True)) == {JobStatus.CANCELLED}
    assert recovery.jobs_janitor().cancelled == 0  # repaired once


def test_a_cancelled_jobs_subjob_whose_worker_was_lost_is_cancelled_by_the_reaper(staged_job):
    job = staged_job()
    subjob = job.subjobs.get()
    subjob_claim(subjob_id=subjob.pk, worker="gone@h:1", task_id="1")
    job_cancel(job=job)
    expire_lease(subjob)

    assert subjobs_reap_expired().cancelled == 1
    assert (status_of(subjob), status_of(job)) == (JobStatus.CANCELLED, JobStatus.CANCELLED)


@pytest.mark.parametrize("cancelled", [True, False], ids=["cancelled", "requeued"])
def test_the_reaper_removes_a_lost_workers_temporaries_but_not_a_live_ones(
    staged_job, store, cancelled
):
    job = staged_job({"d/a.txt": b"alpha"})
    subjob = job.subjobs.get()
    subjob_claim(subjob_id=subjob.pk, worker="gone@h:1", task_id="1")
    if cancelled:
        job_cancel(job=job)
    expire_lease(subjob)
    directory = Path(store.staging_root) / "d"
    directory.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    dead = directory / f".stagingsvc-a.txt.{host}.{2**22 + 3}.0badc0de.part"
    live = directory / f".stagingsvc-a.txt.{host}.{os.getppid()}.0badc0de.part"
    for temporary in (dead, live):
        temporary.write_bytes(b"partial")

    summary = subjobs_reap_expired()

    assert (summary.cancelled, summary.requeued) == ((1, 0) if cancelled else (0, 1))
    assert not dead.exists() and live.exists()


def test_the_reconciler_does_not_republish_subjobs_of_a_cancelling_job(staged_job, broker):
    job = staged_job()
    subjob = job.subjobs.get()
    subjob_claim(subjob_id=subjob.pk, worker="a@h:1", task_id="1")
    job_cancel(job=job)
    subjob_hand_back(subjob_id=subjob.pk, worker="a@h:1", publish=False)
    SubJob.objects.filter(pk=subjob.pk).update(dispatched_at=timezone.now() - timedelta(days=1))

    assert subjobs_reconcile() == 0


# --- 2. Lost roll-up ------------------------------------------------------------------------


def test_the_janitor_rolls_up_a_job_whose_subjobs_all_ended(staged_job):
    job = staged_job()
    subjob = job.subjobs.get()
    # What a crash between the sub-job's final write and the job's roll-up leaves behind.
    subjob_claim(subjob_id=subjob.pk, worker="a@h:1", task_id="1")
    Item.objects.filter(job=job).update(status=JobStatus.FINISHED)
    SubJob.objects.filter(pk=subjob.pk).update(status=JobStatus.FINISHED, worker="")

    assert recovery.jobs_janitor().rolled_up == 1
    job.refresh_from_db()
    assert (job.status, job.files_done) == (JobStatus.FINISHED, 2)


def test_a_failing_roll_up_leaves_the_subjob_running_for_another_try(staged_job):
    job = staged_job()
    subjob = job.subjobs.get()
    with (
        mock.patch("staging.services.transitions._job_final", side_effect=RuntimeError("crash")),
        pytest.raises(RuntimeError),
    ):
        subjob_run(subjob_id=subjob.pk, worker="a@h:1", task_id="1")
    # One transaction: the sub-job's finish went with the failed roll-up.
    assert status_of(subjob) != JobStatus.FINISHED
    assert status_of(job) != JobStatus.FINISHED


# --- 3. Crash loops -------------------------------------------------------------------------


def test_a_subjob_that_keeps_raising_fails_after_max_attempts_with_the_last_error(
    staged_job, settings
):
    settings.STAGING = {**settings.STAGING, "MAX_ATTEMPTS": 3}
    job = staged_job()
    subjob = job.subjobs.get()
    calls = []

    def broken(item, store, reporter):
        calls.append(item.pk)
        raise RuntimeError(f"bug number {len(calls)}")

    for attempt in range(1, 6):
        if status_of(subjob) != JobStatus.NOT_STARTED:
            break
        with pytest.raises(RuntimeError):
            subjob_run(
                subjob_id=subjob.pk, worker=f"w@h:{attempt}", task_id=str(attempt), work=broken
            )
    recovery.jobs_janitor()

    subjob.refresh_from_db()
    assert subjob.status == JobStatus.FAILED
    assert "bug number 3" in subjob.error
    assert len(calls) == 3
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert set(job.items.values_list("status", flat=True)) == {JobStatus.FAILED}
    assert subjobs_reconcile() == 0


# --- 5. Pins that hold ----------------------------------------------------------------------


def test_retry_recreates_pins_the_sweeper_already_deleted(staged_job, store):
    job = staged_job()
    (Path(store.archive_root) / "a.txt").rename(Path(store.archive_root) / "a.moved")
    for subjob in job.subjobs.all():
        subjob_run(subjob_id=subjob.pk, worker="a@h:1", task_id="1")
    assert status_of(job) == JobStatus.PARTIALLY_FAILED
    job_release(job=job)
    staged_copies_sweep()
    assert not Pin.objects.filter(job=job).exists()

    (Path(store.archive_root) / "a.moved").rename(Path(store.archive_root) / "a.txt")
    job = job_retry(job=Job.objects.get(pk=job.pk))
    pin = Pin.objects.get(job=job, path="a.txt")
    assert pin.released_at is None and pin.expires_at > timezone.now()


def test_the_sweeper_pages_past_dead_paths_that_others_still_pin(staged_job, store):
    keeper = staged_job({f"shared{n}.txt": b"s" for n in range(3)})
    for subjob in keeper.subjobs.all():
        subjob_run(subjob_id=subjob.pk, worker="a@h:1", task_id="1")
    done = staged_job({f"shared{n}.txt": b"s" for n in range(3)} | {"zzz.txt": b"z"})
    for subjob in done.subjobs.all():
        subjob_run(subjob_id=subjob.pk, worker="a@h:1", task_id="1")
    job_release(job=done)

    assert staged_copies_sweep(batch=2) == 1
    assert not (Path(store.staging_root) / "zzz.txt").exists()
    assert (Path(store.staging_root) / "shared0.txt").exists()


# --- 7. Smaller -----------------------------------------------------------------------------


def test_bytes_of_a_failed_attempt_are_not_counted_twice(staged_job, settings):
    settings.STAGING = {**settings.STAGING, "PROGRESS_INTERVAL_SECONDS": 0}
    job = staged_job({"big.bin": b"x" * 900, "small.bin": b"y" * 100})
    subjob = job.subjobs.get()
    seen = []

    def flaky_then_fine(item, store, reporter):
        if item.path == "small.bin":
            reporter.flush()
            seen.append(Job.objects.values_list("bytes_done", flat=True).get(pk=job.pk))
        reporter.add_bytes(item.size)
        if item.path == "big.bin" and len(seen) == 0 and not hasattr(flaky_then_fine, "failed"):
            flaky_then_fine.failed = True
            raise OSError(errno.EIO, "flaky disk")

    with mock.patch("staging.services.execution.time.sleep"):
        assert subjob_run(subjob_id=subjob.pk, worker="a@h:1", task_id="1", work=flaky_then_fine)
    assert seen == [900]


def test_bytes_of_a_subjob_handed_back_mid_file_are_taken_back(staged_job, settings):
    settings.STAGING = {**settings.STAGING, "PROGRESS_INTERVAL_SECONDS": 0}
    job = staged_job({"big.bin": b"x" * 900})
    subjob = job.subjobs.get()

    def interrupted(item, store, reporter):
        reporter.add_bytes(600)
        raise SystemExit(1)  # what a warm shutdown raises in a pool process

    with pytest.raises(SystemExit):
        subjob_run(subjob_id=subjob.pk, worker="a@h:1", task_id="1", work=interrupted)
    assert Job.objects.values_list("bytes_done", flat=True).get(pk=job.pk) == 0
    assert SubJob.objects.values_list("bytes_done", flat=True).get(pk=subjob.pk) == 0


def test_warm_shutdown_hand_backs_do_not_use_up_attempts(staged_job, settings):
    settings.STAGING = {**settings.STAGING, "MAX_ATTEMPTS": 2}
    job = staged_job()
    subjob = job.subjobs.get()
    for n in range(4):  # a rolling restart, four times over
        subjob_claim(subjob_id=subjob.pk, worker=f"w@h:{n}", task_id=str(n))
        subjob_hand_back(subjob_id=subjob.pk, worker=f"w@h:{n}", publish=False)
    subjob_claim(subjob_id=subjob.pk, worker="w@h:9", task_id="9")
    expire_lease(subjob)  # then one real loss

    summary = subjobs_reap_expired()
    assert (summary.requeued, summary.failed) == (1, 0)
    assert status_of(subjob) == JobStatus.NOT_STARTED


def test_a_tape_request_with_one_file_cancelled_is_finished(store, archive_files):
    archive_files({"t/a.bin": b"a", "t/b.bin": b"b"})
    job = stage_request_create(
        owner=UserFactory(), files=[StageFile(path="/t/a.bin"), StageFile(path="/t/b.bin")]
    )
    assert stage_request_cancel(job=job, paths=["/t/b.bin"]) == 1
    for subjob in job.subjobs.filter(status=JobStatus.NOT_STARTED):
        subjob_run(subjob_id=subjob.pk, worker="a@h:1", task_id="1")

    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED
    assert (job.files_done, job.files_failed) == (1, 0)


def test_a_tape_request_with_every_file_cancelled_while_running_is_cancelled(store, archive_files):
    archive_files({"t/a.bin": b"a"})
    job = stage_request_create(owner=UserFactory(), files=[StageFile(path="/t/a.bin")])
    subjob = job.subjobs.get()
    subjob_claim(subjob_id=subjob.pk, worker="a@h:1", task_id="1")
    Item.objects.filter(job=job).update(status=JobStatus.CANCELLED)
    SubJob.objects.filter(pk=subjob.pk).update(status=JobStatus.NOT_STARTED, worker="")
    subjob_run(subjob_id=subjob.pk, worker="a@h:1", task_id="2")
    assert status_of(job) == JobStatus.CANCELLED


def test_a_cancel_arriving_during_the_roll_up_is_not_overwritten_with_finished(staged_job):
    job = staged_job()
    subjob = job.subjobs.get()
    injected = []

    def cancel_just_before_the_final_write(execute, sql, params, many, context):
        if (
            not injected
            and sql.startswith('UPDATE "staging_job" SET "status"')
            and JobStatus.FINISHED in (params or ())
        ):
            injected.append(sql)
            with connection.cursor() as cursor:
                cursor.execute(
                    'UPDATE "staging_job" SET "status" = %s WHERE "id" = %s',
                    [JobStatus.CANCELLING, job.pk],
                )
        return execute(sql, params, many, context)

    with connection.execute_wrapper(cancel_just_before_the_final_write):
        subjob_run(subjob_id=subjob.pk, worker="a@h:1", task_id="1")
    assert injected
    assert status_of(job) == JobStatus.CANCELLED


# --- 6. Leases judged by the database's clock -------------------------------------------------


def test_a_lease_taken_by_a_worker_whose_clock_is_behind_still_holds(staged_job):
    subjob = staged_job().subjobs.get()
    behind = timezone.now() - timedelta(hours=1)
    with mock.patch("staging.services.execution.timezone.now", return_value=behind):
        assert subjob_claim(subjob_id=subjob.pk, worker="slow-clock@h:1", task_id="1")
    assert subjob_claim(subjob_id=subjob.pk, worker="b@h:2", task_id="2") is None
    assert SubJob.objects.get(pk=subjob.pk).worker == "slow-clock@h:1"


# --- 6. Fencing by lease holder (rows written by other connections: transactional) ----------


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_lost_its_lease_puts_no_file_in_place_and_changes_no_row(
    staged_job, store, settings
):
    settings.STAGING = {
        **settings.STAGING,
        "HEARTBEAT_SECONDS": 0.1,
        "COPY_CHUNK_BYTES": 1,
        "PROGRESS_INTERVAL_SECONDS": 3600,  # no progress write: only the lease can stop it
    }
    job = staged_job({"fenced.bin": b"f" * 64})
    subjob = job.subjobs.get()

    def taken_over_then_copy(item, store, reporter):
        # Cut off long enough for the reaper to hand the sub-job to another worker.
        SubJob.objects.filter(pk=subjob.pk).update(worker="new-owner@h:2")
        deadline = time.monotonic() + 3
        while not reporter.should_stop() and time.monotonic() < deadline:
            time.sleep(0.05)
        stage_item(item, store, reporter)

    assert (
        subjob_run(subjob_id=subjob.pk, worker="old@h:1", task_id="1", work=taken_over_then_copy)
        is None
    )
    assert not (Path(store.staging_root) / "fenced.bin").exists()
    assert list(Path(store.staging_root).iterdir()) == []
    subjob.refresh_from_db()
    assert (subjob.status, subjob.worker, subjob.files_done) == (
        JobStatus.RUNNING,
        "new-owner@h:2",
        0,
    )
    assert set(job.items.values_list("status", flat=True)) == {JobStatus.NOT_STARTED}
    assert status_of(job) == JobStatus.RUNNING


@pytest.mark.django_db(transaction=True)
def test_a_lease_is_kept_through_a_silent_step_longer_than_the_lease(staged_job, settings):
    settings.STAGING = {**settings.STAGING, "LEASE_SECONDS": 2, "HEARTBEAT_SECONDS": 0.2}
    job = staged_job({"quiet.bin": b"q"})
    subjob = job.subjobs.get()
    rivals = []

    def silent(item, store, reporter):
        time.sleep(4.5)  # no progress reported for over two lease periods
        rivals.append(subjob_claim(subjob_id=subjob.pk, worker="rival@h:2", task_id="2"))

    assert subjob_run(subjob_id=subjob.pk, worker="a@h:1", task_id="1", work=silent)
    assert rivals == [None]
    assert status_of(job) == JobStatus.FINISHED


@pytest.mark.django_db(transaction=True)
def test_the_sweeper_unlinks_without_holding_the_store_lock(staged_job, store, monkeypatch):
    job = staged_job({"gone.txt": b"g"})
    for subjob in job.subjobs.all():
        subjob_run(subjob_id=subjob.pk, worker="a@h:1", task_id="1")
    job_release(job=job)
    lock_free_while_unlinking = []
    unlink = recovery.unlink_beneath

    def store_lock_free() -> bool:
        # From another connection, as a request creating a job would ask for the lock.
        def probe():
            try:
                with transaction.atomic():
                    Store.objects.select_for_update(nowait=True).filter(pk=store.pk).exists()
                lock_free_while_unlinking.append(True)
            except DatabaseError:
                lock_free_while_unlinking.append(False)
            finally:
                connections.close_all()

        thread = threading.Thread(target=probe)
        thread.start()
        thread.join(timeout=30)

    def watched_unlink(root, relative):
        store_lock_free()
        return unlink(root, relative)

    monkeypatch.setattr(recovery, "unlink_beneath", watched_unlink)
    assert staged_copies_sweep() == 1
    assert lock_free_while_unlinking == [True]
    assert list(Path(store.staging_root).iterdir()) == []


def test_a_worker_that_lost_its_lease_records_no_item_result(staged_job):
    job = staged_job({"r.txt": b"r"})
    subjob = job.subjobs.get()

    def taken_over_then_record(item, store, reporter):
        SubJob.objects.filter(pk=subjob.pk).update(worker="new-owner@h:2")
        item_result_record(item_id=item.pk, result={"checksum": "stale"})

    assert (
        subjob_run(subjob_id=subjob.pk, worker="old@h:1", task_id="1", work=taken_over_then_record)
        is None
    )
    assert job.items.get().result == {}
