"""Staging records the MD5 of what it copied where the catalogue had none, and the DTS's
resources then announce it. Sub-jobs run in this process; the integration tier runs them in
real workers."""

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from staging.models import File, JobStatus, Store
from staging.roles import Role
from staging.services.catalogue import (
    catalogue_file_md5_record,
    catalogue_scan,
    catalogue_upsert_paths,
)
from staging.services.execution import subjob_run
from staging.services.jobs import job_create_staging
from tests.factories import UserFactory
from tests.staging.os_calls import CountedCalls

pytestmark = pytest.mark.django_db


def _write(store: Store, contents: dict[str, bytes]) -> None:
    for relative, data in contents.items():
        path = Path(store.archive_root) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _stage(store: Store, files: list[File]):
    job = job_create_staging(owner=UserFactory(), store=store, files=files, source="dts")
    for subjob in job.subjobs.all():
        subjob_run(subjob_id=subjob.pk, worker="node@host:1", task_id="t")
    job.refresh_from_db()
    return job


def test_a_file_registered_by_path_gets_the_md5_of_its_bytes_once_staged(store, client_for):
    data = os.urandom(3 * 1024 * 1024 + 5)
    _write(store, {"run1/reads.fastq": data})
    (file,) = catalogue_upsert_paths(store=store, paths=["run1/reads.fastq"])
    assert File.objects.get(pk=file.pk).md5 == ""

    assert _stage(store, [file]).status == JobStatus.FINISHED

    expected = hashlib.md5(data).hexdigest()
    assert File.objects.get(pk=file.pk).md5 == expected
    dts = client_for(Role.SERVICE_USER)
    (resource,) = dts.get(f"/dts/resources?ids={file.id}").json()
    assert resource["hash"] == expected


def test_a_tape_file_without_a_sidecar_gets_its_md5_from_the_copy(tape_store, client_for):
    _write(tape_store, {"tapes/run7.tar": b"tape contents " * 1000})
    catalogue_scan(store=tape_store)
    file = File.objects.get(store=tape_store, path="tapes/run7.tar")
    dts = client_for(Role.SERVICE_USER)
    assert dts.get(f"/dts/resources?ids={file.id}").json()[0]["hash"] == ""

    assert _stage(tape_store, [file]).status == JobStatus.FINISHED

    expected = hashlib.md5(b"tape contents " * 1000).hexdigest()
    assert dts.get(f"/dts/resources?ids={file.id}").json()[0]["hash"] == expected


def test_a_file_with_a_known_md5_is_copied_by_the_kernel_and_keeps_its_md5(
    store, archive_files, monkeypatch
):
    (file,) = archive_files({"known.bin": os.urandom(200_000)})
    # Whatever the catalogue holds is kept: staging never reads a file only to hash it.
    File.objects.filter(pk=file.pk).update(md5="0123456789abcdef0123456789abcdef")
    reads = CountedCalls(os.pread)
    monkeypatch.setattr(os, "pread", reads)

    assert _stage(store, [file]).status == JobStatus.FINISHED

    assert reads.count == 0
    assert File.objects.get(pk=file.pk).md5 == "0123456789abcdef0123456789abcdef"
    staged = Path(store.staging_root) / "known.bin"
    assert staged.read_bytes() == (Path(store.archive_root) / "known.bin").read_bytes()


def test_a_copy_that_fails_mid_file_and_is_retried_records_the_md5_of_the_whole_file(
    store, settings, monkeypatch
):
    settings.STAGING = {**settings.STAGING, "COPY_CHUNK_BYTES": 64 * 1024}
    data = os.urandom(300_000)
    _write(store, {"big.bin": data})
    (file,) = catalogue_upsert_paths(store=store, paths=["big.bin"])
    monkeypatch.setattr(os, "pwrite", CountedCalls(os.pwrite, fail_on=2))

    job = _stage(store, [file])

    assert job.status == JobStatus.FINISHED
    assert job.items.get().attempts == 2
    assert File.objects.get(pk=file.pk).md5 == hashlib.md5(data).hexdigest()


def test_a_file_changed_since_it_was_catalogued_gets_no_md5_from_its_copy(store):
    _write(store, {"edited.txt": b"version one"})
    (file,) = catalogue_upsert_paths(store=store, paths=["edited.txt"])
    source = Path(store.archive_root) / "edited.txt"
    source.write_bytes(b"version two")  # same size, another mtime: not what the row describes
    later = source.stat().st_mtime_ns + 2_000_000_000
    os.utime(source, ns=(later, later))

    assert _stage(store, [file]).status == JobStatus.FINISHED

    assert File.objects.get(pk=file.pk).md5 == ""


def test_the_md5_of_a_copy_never_replaces_one_the_catalogue_learned_meanwhile(store):
    _write(store, {"a.txt": b"alpha"})
    (file,) = catalogue_upsert_paths(store=store, paths=["a.txt"])
    copied = (Path(store.archive_root) / "a.txt").stat()
    File.objects.filter(pk=file.pk).update(md5="0123456789abcdef0123456789abcdef")

    recorded = catalogue_file_md5_record(
        file_id=file.pk, md5=hashlib.md5(b"alpha").hexdigest(), copied=copied
    )

    assert recorded is False
    assert File.objects.get(pk=file.pk).md5 == "0123456789abcdef0123456789abcdef"


def test_the_md5_of_a_copy_is_not_recorded_on_a_row_that_describes_other_content(store):
    _write(store, {"a.txt": b"alpha"})
    (file,) = catalogue_upsert_paths(store=store, paths=["a.txt"])
    copied = (Path(store.archive_root) / "a.txt").stat()
    # A scan saw the file change after it was copied.
    File.objects.filter(pk=file.pk).update(mtime=datetime(2030, 1, 1, tzinfo=UTC))

    assert not catalogue_file_md5_record(file_id=file.pk, md5="0" * 32, copied=copied)
    assert File.objects.get(pk=file.pk).md5 == ""
