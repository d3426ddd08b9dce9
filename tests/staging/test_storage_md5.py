"""A copy asked for its MD5 (staging.storage.stage_file with ``on_md5``): the bytes pass through
the process once, are hashed on the way, and the MD5 is told only for a complete copy of an
archive file that did not change meanwhile."""

import errno
import hashlib
import os
from pathlib import Path

import pytest

from staging.storage import StagingCancelled, stage_file
from tests.staging.os_calls import CountedCalls

SIZE = 300_000


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "archive" / "genome.fasta"
    path.parent.mkdir()
    path.write_bytes(os.urandom(SIZE))
    return path


@pytest.fixture
def told() -> list[tuple[str, os.stat_result]]:
    """What ``on_md5`` was told, one (md5, stat) per call."""
    return []


@pytest.fixture
def stage_asking_md5(source: Path, told):
    """``stage_asking_md5(destination, **options)``: stage_file of the archive file with
    ``on_md5`` recording into ``told``; 100 kB chunks unless told otherwise."""

    def stage(destination: Path, **options) -> str:
        options.setdefault("chunk_bytes", 100_000)
        return stage_file(
            source,
            destination,
            expected_size=SIZE,
            on_md5=lambda md5, copied: told.append((md5, copied)),
            **options,
        )

    return stage


def test_a_copy_asked_for_its_md5_is_read_through_the_process_and_tells_the_md5(
    tmp_path: Path, source: Path, told, stage_asking_md5, monkeypatch
):
    kernel_copies = CountedCalls(os.copy_file_range)
    sendfiles = CountedCalls(os.sendfile)
    monkeypatch.setattr(os, "copy_file_range", kernel_copies)
    monkeypatch.setattr(os, "sendfile", sendfiles)
    destination = tmp_path / "staging" / "genome.fasta"

    assert stage_asking_md5(destination, chunk_bytes=70_000) == "copied"

    assert destination.read_bytes() == source.read_bytes()
    ((md5, copied),) = told
    assert md5 == hashlib.md5(source.read_bytes()).hexdigest()
    assert (copied.st_size, copied.st_mtime_ns) == (SIZE, source.stat().st_mtime_ns)
    assert (kernel_copies.count, sendfiles.count) == (0, 0)


def test_a_copy_not_asked_for_its_md5_keeps_the_kernel_path(
    tmp_path: Path, source: Path, monkeypatch
):
    kernel_copies, reads = CountedCalls(os.copy_file_range), CountedCalls(os.pread)
    monkeypatch.setattr(os, "copy_file_range", kernel_copies)
    monkeypatch.setattr(os, "pread", reads)

    stage_file(source, tmp_path / "staging" / "f", expected_size=SIZE, chunk_bytes=70_000)

    assert kernel_copies.count >= 1
    assert reads.count == 0


def test_short_writes_still_give_the_md5_of_the_whole_file(
    tmp_path: Path, source: Path, told, stage_asking_md5, monkeypatch
):
    real_pwrite = os.pwrite

    def writes_half(fd, data, offset):
        return real_pwrite(fd, bytes(data[: max(len(data) // 2, 1)]), offset)

    monkeypatch.setattr(os, "pwrite", writes_half)
    destination = tmp_path / "staging" / "f"

    stage_asking_md5(destination, chunk_bytes=64_000)

    assert destination.read_bytes() == source.read_bytes()
    assert told[0][0] == hashlib.md5(source.read_bytes()).hexdigest()


def test_kernel_paths_that_fail_mid_file_do_not_change_the_md5_told(
    tmp_path: Path, source: Path, told, stage_asking_md5, monkeypatch
):
    kernel_copy = CountedCalls(os.copy_file_range, fail_on=2, errno_number=errno.EXDEV)
    sendfile = CountedCalls(os.sendfile, fail_on=2, errno_number=errno.EINVAL)
    monkeypatch.setattr(os, "copy_file_range", kernel_copy)
    monkeypatch.setattr(os, "sendfile", sendfile)
    destination = tmp_path / "staging" / "f"

    stage_asking_md5(destination)

    assert destination.read_bytes() == source.read_bytes()
    assert [md5 for md5, _ in told] == [hashlib.md5(source.read_bytes()).hexdigest()]


def test_a_write_that_fails_mid_file_tells_no_md5_and_leaves_no_copy(
    tmp_path: Path, told, stage_asking_md5, monkeypatch
):
    monkeypatch.setattr(os, "pwrite", CountedCalls(os.pwrite, fail_on=2))
    destination = tmp_path / "staging" / "f"

    with pytest.raises(OSError, match="Input/output error"):
        stage_asking_md5(destination)

    assert told == []
    assert list(destination.parent.iterdir()) == []


def test_a_copy_stopped_before_it_takes_its_name_tells_no_md5(
    tmp_path: Path, told, stage_asking_md5
):
    with pytest.raises(StagingCancelled):
        stage_asking_md5(tmp_path / "staging" / "f", should_stop=lambda: True)

    assert told == []


def test_a_file_already_staged_or_hard_linked_is_not_read_and_tells_no_md5(
    tmp_path: Path, source: Path, told, stage_asking_md5, monkeypatch
):
    stage_file(source, tmp_path / "staging" / "copied", expected_size=SIZE)
    source.chmod(0o444)  # an archive file the service may not write can be linked
    reads = CountedCalls(os.pread)
    monkeypatch.setattr(os, "pread", reads)

    skipped = stage_asking_md5(tmp_path / "staging" / "copied")
    linked = stage_asking_md5(tmp_path / "staging" / "linked", hard_link=True)

    assert (skipped, linked) == ("skipped", "linked")
    assert reads.count == 0
    assert told == []
