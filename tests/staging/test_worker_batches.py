"""A worker's bookkeeping comes in batches: one write of a batch's outcomes, each directory
fsynced once per batch and before its items are recorded as done, and a 1-file job run in a
handful of queries. Run in this process with the calls a worker makes (the integration tier
runs real workers); real transactions, so every statement is counted."""

import errno
import os
import socket
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from staging import storage
from staging.catalogue import item_work_for
from staging.models import File, Item, JobStatus, Pin, SubJob
from staging.services.execution import _claimed_subjob, subjob_claim, subjob_run
from staging.services.jobs import job_create_staging
from staging.services.transitions import job_request_cancel
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def create_job(store, files):
    return job_create_staging(owner=UserFactory(), store=store, files=files, source="api")


def job_of_sized_files(store, archive_files, count):
    """A job for ``count`` files run1/f<n>.txt of n bytes each; (their entries, the job)."""
    entries = archive_files({f"run1/f{n}.txt": b"x" * n for n in range(1, count + 1)})
    return entries, create_job(store, entries)


def run(job, subjob_id=None):
    subjob_id = subjob_id or job.subjobs.get().pk
    return subjob_run(
        subjob_id=subjob_id, worker="node@host:1", task_id="t", work_for=item_work_for
    )


def test_the_claim_reads_the_sub_job_job_and_store_as_the_orm_does(store, archive_files):
    store.default_deadline = timedelta(hours=2)
    store.sources = {"fts": True}
    store.save()
    (entry,) = archive_files({"run1/a.txt": b"hello"})
    job = create_job(store, [entry])
    job.parameters = {"verify": True}
    job.save()
    subjob_id = job.subjobs.get().pk

    claimed = _claimed_subjob(subjob_id)

    expected = SubJob.objects.select_related("job__store").get(pk=subjob_id)
    for got, want in (
        (claimed, expected),
        (claimed.job, expected.job),
        (claimed.job.store, expected.job.store),
    ):
        for field in type(want)._meta.concrete_fields:
            assert getattr(got, field.attname) == getattr(want, field.attname), field.name
    assert [item.path for item in claimed.claimed_items] == ["run1/a.txt"]
    assert claimed.job_listened is False


def test_a_run_tallies_its_items_so_the_worker_s_metrics_need_no_count(store, archive_files):
    from tasks.instrumentation import _subjob_recorded

    entries = archive_files({"run1/a.txt": b"hello", "run1/b.txt": b"hi"})
    (Path(store.archive_root) / "run1/b.txt").unlink()  # fails: no such file
    job = create_job(store, entries)
    subjob_id = job.subjobs.get().pk
    tally: dict = {}

    status = subjob_run(
        subjob_id=subjob_id,
        worker="node@host:1",
        task_id="t",
        work_for=item_work_for,
        tally=tally,
    )

    assert (status, tally) == (
        JobStatus.PARTIALLY_FAILED,
        {"finished": 1, "failed": 1, "bytes": 5},
    )
    with CaptureQueriesContext(connection) as recorded:
        _subjob_recorded({"subjob": subjob_id, "status": status, **tally}, 0.1)
    assert recorded.captured_queries == []


def test_a_one_file_job_runs_in_fewer_than_8_queries(store, archive_files):
    (entry,) = archive_files({"run1/a.txt": b"hello"})
    job = create_job(store, [entry])
    subjob_id = job.subjobs.get().pk
    with CaptureQueriesContext(connection) as ran:
        assert run(job, subjob_id) == JobStatus.FINISHED
    everything = [query["sql"] for query in ran.captured_queries]
    # Then, once the end is committed, the worker looks for work waiting for the slot it freed
    # (tests/staging/test_dispatch.py): the dispatcher's work, not this job's.
    ended = everything.index("COMMIT") + 1
    statements, dispatch_pass = everything[:ended], everything[ended:]
    control = [sql for sql in statements if sql in ("BEGIN", "COMMIT", "ROLLBACK")]
    queries = [sql for sql in statements if sql not in control]
    # Claim, items (with sub-job, job and store, and whether anything listens to the job's
    # webhooks), job running; then one transaction: the items' outcomes, the sub-job's end,
    # the job's roll-up, the pins.
    assert len(queries) < 8, "\n".join(statements)
    assert control == ["BEGIN", "COMMIT"], "\n".join(statements)
    # Nothing waits: one probe, without the dispatcher's lock.
    assert len(dispatch_pass) == 1 and dispatch_pass[0].startswith("SELECT 1"), dispatch_pass
    job.refresh_from_db()
    item = job.items.get()
    pin = Pin.objects.get(job=job)
    copied = os.stat(os.path.join(store.staging_root, "run1/a.txt"))
    assert (job.status, job.files_done, job.bytes_done) == (JobStatus.FINISHED, 1, 5)
    assert (item.status, item.attempts, item.bytes_done) == (JobStatus.FINISHED, 1, 5)
    assert item.started_at is not None and item.started_at <= item.finished_at
    assert job.started_at is not None
    assert pin.source_size == 5
    assert pin.source_mtime.timestamp() == pytest.approx(copied.st_mtime_ns / 1e9, abs=1e-5)
    assert pin.expires_at == job.finished_at + job.lifetime


def directory_fsyncs(monkeypatch, on_fsync=lambda fd: None):
    """Record the directories fsynced (by inode) and call ``on_fsync`` before each."""
    seen = []
    real_fsync = os.fsync

    def fsync(fd):
        found = os.fstat(fd)
        if stat.S_ISDIR(found.st_mode):
            seen.append(found.st_ino)
            on_fsync(fd)
        return real_fsync(fd)

    monkeypatch.setattr(storage.os, "fsync", fsync)
    return seen


def test_each_directory_is_fsynced_once_per_batch_and_outcomes_written_in_one_update(
    store, archive_files, monkeypatch
):
    # More files than go into the pins' lifetime UPDATE: their stamps are joined from VALUES.
    entries, job = job_of_sized_files(store, archive_files, 10)
    fsynced = directory_fsyncs(monkeypatch)
    with CaptureQueriesContext(connection) as ran:
        assert run(job) == JobStatus.FINISHED
    run1 = os.stat(os.path.join(store.staging_root, "run1")).st_ino
    root = os.stat(store.staging_root).st_ino
    # run1 made (its parent fsynced once), ten copies renamed into it (fsynced once).
    assert sorted(fsynced) == sorted([root, run1])
    item_updates = [q for q in ran.captured_queries if q["sql"].startswith('UPDATE "staging_item"')]
    assert len(item_updates) == 1
    assert set(job.items.values_list("status", "attempts")) == {(JobStatus.FINISHED, 1)}
    stamped = {pin.path: pin.source_size for pin in Pin.objects.filter(job=job)}
    assert stamped == {entry.path: entry.size for entry in entries}


def test_items_are_finished_in_the_database_only_after_their_directory_was_fsynced(
    store, archive_files, monkeypatch
):
    entries = archive_files({"run1/a.txt": b"a", "run1/b.txt": b"b"})
    job = create_job(store, entries)
    statuses_at_fsync = []
    directory_fsyncs(
        monkeypatch,
        lambda fd: statuses_at_fsync.append(set(job.items.values_list("status", flat=True))),
    )
    assert run(job) == JobStatus.FINISHED
    assert statuses_at_fsync and JobStatus.FINISHED not in set().union(*statuses_at_fsync)
    assert set(job.items.values_list("status", flat=True)) == {JobStatus.FINISHED}


def test_a_directory_fsync_that_fails_leaves_its_items_unfinished(
    store, archive_files, monkeypatch
):
    entries = archive_files({"run1/a.txt": b"a", "run1/b.txt": b"b"})
    job = create_job(store, entries)
    target = os.path.join(store.staging_root, "run1")

    def fail_for_run1(fd):
        if os.path.exists(target) and os.fstat(fd).st_ino == os.stat(target).st_ino:
            raise OSError(errno.EIO, "injected")

    directory_fsyncs(monkeypatch, fail_for_run1)
    with pytest.raises(OSError, match="injected"):
        run(job)
    # Both copies were renamed into run1, but it never reached the disk: nothing is ready.
    assert os.path.exists(os.path.join(target, "a.txt"))
    assert set(job.items.values_list("status", flat=True)) == {JobStatus.NOT_STARTED}
    subjob = SubJob.objects.get(job=job)
    assert (subjob.status, subjob.failures) == (JobStatus.NOT_STARTED, 1)
    job.refresh_from_db()
    assert job.status != JobStatus.FINISHED


def test_a_small_copys_fsync_that_fails_at_the_batch_hands_the_subjob_back_with_nothing_ready(
    store, archive_files, monkeypatch
):
    # Small copies of a job without verify are fsynced and named together when the batch is
    # written: a disk that fills only at writeback fails there, not in one item's copy.
    entries = archive_files({"run1/a.txt": b"a", "run1/b.txt": b"b"})
    job = create_job(store, entries)
    real_fsync = os.fsync

    def full_at_writeback(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(storage.os, "fsync", full_at_writeback)
    with pytest.raises(OSError, match="No space left"):
        run(job)
    assert set(job.items.values_list("status", flat=True)) == {JobStatus.NOT_STARTED}
    subjob = SubJob.objects.get(job=job)
    assert (subjob.status, subjob.failures) == (JobStatus.NOT_STARTED, 1)
    assert "no space left on device" in subjob.error.lower()
    # Neither a final name nor a temporary is left behind.
    assert os.listdir(os.path.join(store.staging_root, "run1")) == []


def test_an_item_cancelled_on_its_own_during_the_batch_stays_cancelled(store, archive_files):
    entries = archive_files({"a.txt": b"a", "b.txt": b"b"})
    job = create_job(store, entries)
    (subjob,) = job.subjobs.all()
    calls = []

    def work(item, store_, reporter):
        calls.append(item.path)
        if item.path == "a.txt":  # b is cancelled while the batch is in hand
            Item.objects.filter(job=job, path="b.txt").update(status=JobStatus.CANCELLED)

    assert subjob_run(subjob_id=subjob.pk, worker="n@h:1", task_id="t", work=work) == (
        JobStatus.FINISHED
    )
    assert dict(job.items.values_list("path", "status")) == {
        "a.txt": JobStatus.FINISHED,
        "b.txt": JobStatus.CANCELLED,
    }
    job.refresh_from_db()
    assert (job.status, job.files_done) == (JobStatus.FINISHED, 1)


def test_a_batch_written_in_the_middle_of_a_copy_leaves_the_copy_whole(
    store, archive_files, settings
):
    # A write at every chunk: each copy spans several batches of the directory cache.
    settings.STAGING = {
        **settings.STAGING,
        "PROGRESS_INTERVAL_SECONDS": 0,
        "COPY_CHUNK_BYTES": 4096,
    }
    contents = {f"run1/f{n}.bin": os.urandom(4096 * 3 + n) for n in range(3)}
    job = create_job(store, archive_files(contents))
    assert run(job) == JobStatus.FINISHED
    assert set(job.items.values_list("status", "attempts")) == {(JobStatus.FINISHED, 1)}
    staged = os.path.join(store.staging_root, "run1")
    assert sorted(os.listdir(staged)) == sorted(os.path.basename(p) for p in contents)
    for path, data in contents.items():
        with open(os.path.join(store.staging_root, path), "rb") as copy:
            assert copy.read() == data


def test_a_delivery_that_finds_its_dead_siblings_job_cancelled_clears_its_temporary(
    store, archive_files
):
    entries = archive_files({"run1/a.txt": b"a"})
    job = create_job(store, entries)
    subjob_id = job.subjobs.get().pk
    dead_pid = 2**22 + 17  # above the kernel's PID_MAX_LIMIT: never a live process
    assert subjob_claim(subjob_id=subjob_id, worker=f"node@h:{dead_pid}", task_id="1")
    # What the dead process left mid-copy, then a cancel, then the task's redelivery.
    leftover = os.path.join(
        store.staging_root, "run1", f".stagingsvc-a.txt.{socket.gethostname()}.{dead_pid}.0f.part"
    )
    os.makedirs(os.path.dirname(leftover))
    open(leftover, "wb").close()
    job_request_cancel(job.pk)
    assert subjob_claim(subjob_id=subjob_id, worker=f"node@h:{os.getpid()}", task_id="2") is None
    assert not os.path.exists(leftover)


def test_a_claim_reads_the_sub_job_and_all_its_items_in_one_query(store, archive_files):
    entries = archive_files({f"run1/f{n}.txt": b"x" * n for n in range(1, 41)})
    File.objects.filter(pk=entries[0].pk).update(md5="")  # a file the catalogue has no MD5 of
    job = create_job(store, entries)
    subjob_id = job.subjobs.get().pk
    started = timezone.now()
    ended = list(job.items.order_by("pk").values_list("pk", flat=True)[:2])
    Item.objects.filter(pk=ended[0]).update(
        status=JobStatus.FINISHED, attempts=2, started_at=started, finished_at=started
    )
    Item.objects.filter(pk=ended[1]).update(status=JobStatus.FAILED, error="gone", result={"a": 1})

    with CaptureQueriesContext(connection) as ran:
        subjob = subjob_claim(subjob_id=subjob_id, worker="node@host:1", task_id="t")

    # The lease, the sub-job with its job, store and items, the job running.
    assert len([q for q in ran.captured_queries if q["sql"].startswith("SELECT")]) == 1
    assert len(ran.captured_queries) == 3
    items = subjob.claimed_items
    assert [i.pk for i in items] == list(job.items.order_by("pk").values_list("pk", flat=True))
    assert all(item.subjob is subjob for item in items)
    assert subjob.job.store == store and subjob.job_listened is False
    assert [i.catalogue_lacks_md5 for i in items[:2]] == [True, False]
    first, second = items[0], items[1]
    assert (first.status, first.attempts, first.started_at) == (JobStatus.FINISHED, 2, started)
    assert (second.status, second.error, second.result) == (JobStatus.FAILED, "gone", {"a": 1})
    assert (items[2].path, items[2].size, items[2].file_id) == ("run1/f3.txt", 3, entries[2].pk)


def file_fsyncs_and_renames(monkeypatch, on_rename=lambda name: None):
    """Record, in order, ("fsync", inode) of every regular file fsynced and ("rename", name) of
    every copy renamed into place; ``on_rename`` is called before each rename."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        found = os.fstat(fd)
        if stat.S_ISREG(found.st_mode):
            events.append(("fsync", found.st_ino))
        return real_fsync(fd)

    def replace(source, target, **kwargs):
        on_rename(target)
        inode = os.stat(source, dir_fd=kwargs.get("src_dir_fd"), follow_symlinks=False).st_ino
        events.append(("rename", inode))
        return real_replace(source, target, **kwargs)

    monkeypatch.setattr(storage.os, "fsync", fsync)
    monkeypatch.setattr(storage.os, "replace", replace)
    return events


def test_copies_take_their_names_only_once_fsynced_and_before_their_items_finish(
    store, archive_files, monkeypatch
):
    entries, job = job_of_sized_files(store, archive_files, 5)
    statuses_at_rename = []
    events = file_fsyncs_and_renames(
        monkeypatch,
        lambda name: statuses_at_rename.append(set(job.items.values_list("status", flat=True))),
    )
    assert run(job) == JobStatus.FINISHED
    renamed = [inode for event, inode in events if event == "rename"]
    assert len(renamed) == 5
    for inode in renamed:  # each copy reached the disk before it took its name
        assert events.index(("fsync", inode)) < events.index(("rename", inode))
    assert JobStatus.FINISHED not in set().union(*statuses_at_rename)
    for entry in entries:
        staged = os.path.join(store.staging_root, entry.path)
        assert os.path.getsize(staged) == entry.size
    assert not [n for n in os.listdir(os.path.join(store.staging_root, "run1")) if ".part" in n]
    assert set(job.items.values_list("status", flat=True)) == {JobStatus.FINISHED}


def test_a_hard_link_store_s_files_are_staged_as_links_of_the_archive_files(store, archive_files):
    entries = archive_files({"run1/a.txt": b"hello", "run1/deep/b.txt": b"hi"})
    for entry in entries:
        os.chmod(os.path.join(store.archive_root, entry.path), 0o444)  # the service may not write
    store.hard_link = True
    store.save(update_fields=["hard_link"])
    job = create_job(store, entries)

    for subjob in job.subjobs.all():
        assert run(job, subjob.pk) == JobStatus.FINISHED

    job.refresh_from_db()
    assert (job.status, job.files_done, job.bytes_done) == (JobStatus.FINISHED, 2, 7)
    for entry in entries:
        staged = os.stat(os.path.join(store.staging_root, entry.path))
        archived = os.stat(os.path.join(store.archive_root, entry.path))
        assert os.path.samestat(staged, archived)
    assert Pin.objects.filter(job=job).count() == 2


def test_a_sub_job_of_a_larger_job_stamps_its_pins_before_it_writes_the_job_row(
    store, archive_files, settings
):
    """The sub-jobs of one job that end together wait for each other on the job's row (its
    counters, its roll-up): the pins each stamps are written before it takes that row."""
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 2}
    entries, job = job_of_sized_files(store, archive_files, 4)
    first, second = job.subjobs.order_by("sequence").values_list("pk", flat=True)
    with CaptureQueriesContext(connection) as ran:
        assert run(job, first) == JobStatus.FINISHED
    everything = [query["sql"] for query in ran.captured_queries]
    # The transaction that writes the outcomes (the claim wrote the job row before it).
    statements = everything[everything.index("BEGIN") :]
    stamped = next(i for i, sql in enumerate(statements) if sql.startswith('UPDATE "staging_pin"'))
    job_row = next(i for i, sql in enumerate(statements) if sql.startswith('UPDATE "staging_job"'))
    assert stamped < job_row, "\n".join(statements)

    assert run(job, second) == JobStatus.FINISHED

    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED
    pins = Pin.objects.filter(job=job)
    assert {pin.path: pin.source_size for pin in pins} == {e.path: e.size for e in entries}
    assert {pin.expires_at for pin in pins} == {job.finished_at + job.lifetime}


def test_a_sub_job_whose_job_is_already_running_does_not_mark_it_running_again(
    store, archive_files, settings
):
    settings.STAGING = {**settings.STAGING, "SUBJOB_MAX_FILES": 2}
    _, job = job_of_sized_files(store, archive_files, 4)
    first, second = job.subjobs.order_by("sequence").values_list("pk", flat=True)
    assert subjob_claim(subjob_id=first, worker="node@host:1", task_id="t") is not None
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    started_at = job.started_at

    with CaptureQueriesContext(connection) as ran:
        assert subjob_claim(subjob_id=second, worker="node@host:2", task_id="u") is not None

    job_writes = [q["sql"] for q in ran.captured_queries if q["sql"].startswith("UPDATE")]
    assert not [sql for sql in job_writes if '"staging_job"' in sql.split("SET")[0]], job_writes
    job.refresh_from_db()
    assert (job.status, job.started_at) == (JobStatus.RUNNING, started_at)
