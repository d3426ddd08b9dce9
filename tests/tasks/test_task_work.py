"""What each task's work does to files, the catalogue and its results, run in this process
with the same engine calls a worker makes (the integration tier runs them in real workers)."""

import csv
import hashlib
import io
import json
import os
import socket
import zlib
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from staging.api.result_streams import results_stream
from staging.errors import ConflictError
from staging.models import File, Job, JobStatus, Pin
from staging.result_files import results_file_path
from staging.services.jobs import job_create_staging, job_retry
from staging.services.recovery import staged_copies_sweep
from staging.services.retention import job_delete, jobs_purge
from staging.services.tasks import task_perform
from staging.storage import TEMP_PREFIX, TEMP_SUFFIX
from tests.factories import UserFactory
from tests.tasks.test_catalogue_registry import run_all

pytestmark = pytest.mark.django_db


def perform(store, task: str, parameters=None, owner=None) -> Job:
    return task_perform(
        owner=owner or UserFactory(),
        store=store,
        task_name=task,
        source="api",
        parameters=parameters or {},
    )


def csv_rows(job: Job) -> list[dict]:
    return list(csv.DictReader(io.StringIO("".join(results_stream(job=job, fmt="csv")))))


@pytest.mark.parametrize(
    ("algorithm", "reference"),
    [
        ("md5", lambda data: hashlib.md5(data).hexdigest()),
        ("sha256", lambda data: hashlib.sha256(data).hexdigest()),
        ("adler32", lambda data: f"{zlib.adler32(data):08x}"),
    ],
)
def test_checksums_match_hashlib_and_zlib_and_are_kept_in_the_catalogue(
    store, archive_files, settings, algorithm, reference
):
    settings.STAGING = {**settings.STAGING, "COPY_CHUNK_BYTES": 64 * 1024}
    contents = {"big.bin": os.urandom(300_000), "empty": b"", "t.txt": b"ACGT\n"}
    files = archive_files(contents)
    job = run_all(
        perform(store, "checksum", {"ids": [f.id for f in files], "algorithm": algorithm})
    )

    assert job.status == JobStatus.FINISHED
    expected = {path: reference(data) for path, data in contents.items()}
    assert {f.path: getattr(f, algorithm) for f in File.objects.filter(store=store)} == expected
    rows = csv_rows(job)
    assert [r["path"] for r in rows] == list(contents)
    assert {r["path"]: (r["algorithm"], r["checksum"]) for r in rows} == {
        path: (algorithm, value) for path, value in expected.items()
    }
    assert job.bytes_done == sum(map(len, contents.values()))


def test_a_file_changed_since_the_scan_gets_no_checksum_and_fails(store, archive_files):
    (file,) = archive_files({"a.txt": b"alpha"})
    (Path(store.archive_root) / "a.txt").write_bytes(b"alpha and more")
    # By id: the catalogue entry as scanned (by path, the request would refresh it first).
    job = run_all(perform(store, "checksum", {"ids": [file.id]}))
    item = job.items.get()
    assert (job.status, item.attempts) == (JobStatus.FAILED, 1)
    assert "the catalogue says 5: scan the store again" in item.error
    assert File.objects.get(pk=file.pk).sha256 == ""


def test_stage_with_verify_checks_a_new_copy_against_the_md5_taken_while_copying(
    store, archive_files
):
    (file,) = archive_files({"a.txt": b"alpha"})
    File.objects.filter(pk=file.pk).update(md5="")  # a catalogue entry with no checksum yet
    job = run_all(perform(store, "stage", {"paths": ["a.txt"], "verify": True}))
    assert job.status == JobStatus.FINISHED
    md5 = hashlib.md5(b"alpha").hexdigest()
    assert File.objects.get(pk=file.pk).md5 == md5  # taken from the bytes the copy read
    (row,) = csv_rows(job)
    assert (row["status"], row["algorithm"], row["checksum"]) == ("FINISHED", "md5", md5)


def test_stage_with_verify_records_the_checksum_of_a_copy_staged_before(store, archive_files):
    (file,) = archive_files({"a.txt": b"alpha"})
    run_all(perform(store, "stage", {"paths": ["a.txt"]}))
    File.objects.filter(pk=file.pk).update(md5="")  # a catalogue entry with no checksum yet
    # The copy in place is not read again by the copy step: the archive file is, to verify it.
    job = run_all(perform(store, "stage", {"paths": ["a.txt"], "verify": True}))
    assert job.status == JobStatus.FINISHED
    sha = hashlib.sha256(b"alpha").hexdigest()
    assert File.objects.get(pk=file.pk).sha256 == sha  # computed, as the catalogue had none
    (row,) = csv_rows(job)
    assert (row["status"], row["algorithm"], row["checksum"]) == ("FINISHED", "sha256", sha)


def corrupt_copy(store, path: str, data: bytes) -> Path:
    """A staged copy whose bytes went wrong while its size and mtime stayed those of the
    archive file (bit rot, a bad disk): the copy step takes it as already staged."""
    staged = Path(store.staging_root) / path
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_bytes(data)
    archived = (Path(store.archive_root) / path).stat()
    os.utime(staged, ns=(archived.st_atime_ns, archived.st_mtime_ns))
    return staged


def test_stage_with_verify_fails_a_corrupt_copy_at_once_and_removes_it(store, archive_files):
    (file,) = archive_files({"a.txt": b"alpha"})
    File.objects.filter(pk=file.pk).update(md5=hashlib.md5(b"alpha").hexdigest())
    staged = corrupt_copy(store, "a.txt", b"ALPHA")

    job = run_all(perform(store, "stage", {"ids": [file.id], "verify": True}))
    item = job.items.get()
    assert (job.status, item.status, item.attempts) == (JobStatus.FAILED, JobStatus.FAILED, 1)
    assert item.error.startswith("checksum mismatch: the staged copy's md5 is ")
    assert not staged.exists()

    job = run_all(job_retry(job=job))
    assert job.status == JobStatus.FINISHED
    assert staged.read_bytes() == b"alpha"


def test_stage_without_verify_trusts_a_copy_of_the_right_size_and_mtime(store, archive_files):
    archive_files({"a.txt": b"alpha"})
    staged = corrupt_copy(store, "a.txt", b"ALPHA")
    assert run_all(perform(store, "stage", {"paths": ["a.txt"]})).status == JobStatus.FINISHED
    assert staged.read_bytes() == b"ALPHA"


def test_stage_replaces_a_copy_of_the_right_size_made_from_another_version(store, archive_files):
    archive_files({"a.txt": b"alpha"})
    staged = Path(store.staging_root) / "a.txt"
    staged.write_bytes(b"ALPHA")  # same size, but not the archive file's mtime
    assert run_all(perform(store, "stage", {"paths": ["a.txt"]})).status == JobStatus.FINISHED
    assert staged.read_bytes() == b"alpha"


def test_a_scan_updates_the_catalogue_and_lists_every_file_with_known_checksums(
    store, archive_files
):
    (known,) = archive_files({"run1/known.txt": b"k"})
    File.objects.filter(pk=known.pk).update(md5="0" * 32)
    (Path(store.archive_root) / "run1" / 'new, "quoted".txt').write_bytes(b"new")
    (Path(store.archive_root) / "other.txt").write_bytes(b"outside the prefix")

    job = run_all(perform(store, "scan", {"prefix": "run1"}))
    assert job.status == JobStatus.FINISHED
    rows = {row["path"]: row for row in csv_rows(job)}
    assert sorted(rows) == ["run1/known.txt", 'run1/new, "quoted".txt']
    assert rows["run1/known.txt"]["md5"] == "0" * 32
    # A new file on a disk store is read for its MD5; a known one is not read again.
    assert rows['run1/new, "quoted".txt']["md5"] == hashlib.md5(b"new").hexdigest()
    assert rows['run1/new, "quoted".txt']["extension"] == "txt"
    assert File.objects.filter(store=store, path='run1/new, "quoted".txt').exists()
    assert not File.objects.filter(path="other.txt").exists()

    body = json.loads("".join(results_stream(job=job, fmt="json")))
    assert body["summary"] == {
        "files_finished": 1,
        "files_failed": 0,
        "files_cancelled": 0,
        "files_seen": 2,
        "files_added": 1,
        "files_updated": 0,
        "files_unchanged": 1,
        "files_vanished": 0,
        "files_hashed": 1,
    }
    assert [f["size"] for f in body["files"]] == [1, 3]
    lines = "".join(results_stream(job=job, fmt="jsonl")).splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["known.txt", 'new, "quoted".txt']


def test_a_scan_whose_prefix_vanished_fails_and_leaves_no_results_file(store, archive_files):
    archive_files({"run1/a.txt": b"a"})
    job = perform(store, "scan", {"prefix": "run1"})
    (Path(store.archive_root) / "run1" / "a.txt").unlink()
    (Path(store.archive_root) / "run1").rmdir()
    job = run_all(job)
    assert job.status == JobStatus.FAILED
    assert "run1 is not a directory of store primary" in job.items.get().error
    assert job.result_file == ""
    assert csv_rows(job) == []
    assert list(Path(results_file_path("x").parent).glob("*")) == []


def test_a_jobs_results_file_goes_with_the_job(
    store, archive_files, django_capture_on_commit_callbacks
):
    archive_files({"a.txt": b"a"})
    job = run_all(perform(store, "scan"))
    path = results_file_path(job.result_file)
    assert path.is_file()
    with django_capture_on_commit_callbacks(execute=True):
        job_delete(job=job)
    assert not path.exists()
    assert not Job.objects.filter(pk=job.pk).exists()


def test_retention_removes_the_results_file_of_a_job_it_purges(
    store, archive_files, django_capture_on_commit_callbacks
):
    archive_files({"a.txt": b"a"})
    job = run_all(perform(store, "scan"))
    path = results_file_path(job.result_file)
    with django_capture_on_commit_callbacks(execute=True):
        purged = jobs_purge(
            older_than=timedelta(seconds=1), now=timezone.now() + timedelta(minutes=1)
        )
    assert purged.jobs == 1
    assert not path.exists()


def test_a_job_that_still_pins_copies_or_runs_cannot_be_deleted(store, archive_files):
    files = archive_files({"a.txt": b"a"})
    job = job_create_staging(owner=UserFactory(), store=store, files=files, source="api")
    with pytest.raises(ConflictError, match="cancel it"):
        job_delete(job=job)
    job = run_all(job)
    with pytest.raises(ConflictError, match="still pins"):
        job_delete(job=job)


def test_release_by_path_unpins_the_callers_copies_only(store, archive_files):
    files = archive_files({"a.txt": b"a", "b.txt": b"b"})
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    mine = run_all(job_create_staging(owner=alice, store=store, files=files, source="api"))
    theirs = run_all(job_create_staging(owner=bob, store=store, files=files[:1], source="api"))

    job = run_all(perform(store, "release", {"paths": ["a.txt", "not/staged.txt"]}, owner=alice))
    assert job.status == JobStatus.FINISHED
    assert {r["path"]: r["pins_released"] for r in csv_rows(job)} == {
        "a.txt": "1",
        "not/staged.txt": "0",
    }
    live = Pin.objects.filter(released_at__isnull=True)
    assert sorted(live.values_list("job_id", "path")) == [
        (mine.pk, "b.txt"),
        (theirs.pk, "a.txt"),
    ]
    assert staged_copies_sweep() == 0  # bob still pins a.txt


def test_release_of_a_job_unpins_all_its_copies_and_the_sweeper_removes_them(store, archive_files):
    files = archive_files({"a.txt": b"a", "d/b.txt": b"b"})
    owner = UserFactory()
    staged = run_all(job_create_staging(owner=owner, store=store, files=files, source="api"))

    job = run_all(perform(store, "release", {"job": str(staged.uuid)}, owner=owner))
    assert job.status == JobStatus.FINISHED
    assert [r["path"] for r in csv_rows(job)] == ["a.txt", "d/b.txt"]
    assert staged_copies_sweep() == 2
    assert not (Path(store.staging_root) / "a.txt").exists()


def test_verify_keeps_a_corrupt_copy_that_another_job_pins_fails_the_file_and_flags_the_copy(
    store, archive_files
):
    (file,) = archive_files({"a.txt": b"alpha"})
    ready = run_all(perform(store, "stage", {"ids": [file.id]}))
    assert ready.status == JobStatus.FINISHED  # the client was told the file is ready
    File.objects.filter(pk=file.pk).update(md5=hashlib.md5(b"alpha").hexdigest())
    staged = corrupt_copy(store, "a.txt", b"ALPHA")

    checked = run_all(perform(store, "stage", {"ids": [file.id], "verify": True}))

    item = checked.items.get()
    assert (checked.status, item.status) == (JobStatus.FAILED, JobStatus.FAILED)
    assert "the copy was kept, as other jobs pin it, and flagged" in item.error
    assert staged.read_bytes() == b"ALPHA"  # not pulled from under the ready job's client
    pins = Pin.objects.filter(store=store, path="a.txt")
    assert pins.count() == 2 and not pins.filter(mismatch_found_at=None).exists()

    # A flagged copy no longer counts as staged: the next request copies it afresh.
    again = run_all(perform(store, "stage", {"ids": [file.id], "verify": True}))
    assert again.status == JobStatus.FINISHED
    assert staged.read_bytes() == b"alpha"
    assert not pins.exclude(mismatch_found_at=None).exists()


def test_a_staged_files_pin_records_the_archive_files_mtime_and_size(store, archive_files):
    (file,) = archive_files({"d/a.txt": b"alpha"})
    archived = (Path(store.archive_root) / "d" / "a.txt").stat()

    job = run_all(perform(store, "stage", {"ids": [file.id]}))

    pin = Pin.objects.get(job=job, path="d/a.txt")
    assert pin.source_size == 5
    assert pin.source_mtime.timestamp() == pytest.approx(archived.st_mtime, abs=1e-5)
    assert (Path(store.staging_root) / "d" / "a.txt").stat().st_mtime_ns == archived.st_mtime_ns


def test_a_fifo_in_place_of_a_catalogued_file_fails_that_file_at_once(store, archive_files):
    files = archive_files({"a.txt": b"alpha", "b.txt": b"beta"})
    fifo = Path(store.archive_root) / "a.txt"
    fifo.unlink()
    os.mkfifo(fifo)

    job = run_all(perform(store, "stage", {"ids": [f.id for f in files]}))

    failed = job.items.get(path="a.txt")
    assert (job.status, failed.status, failed.attempts) == (
        JobStatus.PARTIALLY_FAILED,
        JobStatus.FAILED,
        1,
    )
    assert failed.error == "a.txt is a FIFO, not a regular file"
    assert (Path(store.staging_root) / "b.txt").read_bytes() == b"beta"


def test_dead_temporaries_are_removed_once_when_a_subjob_starts(store, archive_files):
    files = archive_files({"d/a.txt": b"alpha", "d/b.txt": b"beta", "e/c.txt": b"c"})
    host, dead_pid = socket.gethostname(), 2**22 + 5
    leftovers = [
        Path(store.staging_root) / directory / f"{TEMP_PREFIX}x.{host}.{dead_pid}.1f{TEMP_SUFFIX}"
        for directory in ("d", "e", "untouched")
    ]
    for leftover in leftovers:
        leftover.parent.mkdir(parents=True, exist_ok=True)
        leftover.write_bytes(b"half a copy")

    job = run_all(perform(store, "stage", {"ids": [f.id for f in files]}))

    assert job.status == JobStatus.FINISHED
    assert [leftover.exists() for leftover in leftovers] == [False, False, True]


def test_a_checksum_of_a_fifo_fails_that_file_at_once(store, archive_files):
    # By id: a request by path looks at the file as it is now and refuses a FIFO at once (404);
    # a catalogued id reaches the worker, which must not block on it either.
    (entry,) = archive_files({"a.txt": b"alpha"})
    fifo = Path(store.archive_root) / "a.txt"
    fifo.unlink()
    os.mkfifo(fifo)

    job = run_all(perform(store, "checksum", {"ids": [entry.id]}))

    item = job.items.get()
    assert (job.status, item.attempts, item.error) == (
        JobStatus.FAILED,
        1,
        "a.txt is a FIFO, not a regular file",
    )
