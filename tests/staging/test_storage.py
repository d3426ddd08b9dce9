"""Safe path resolution and crash-safe copies (staging.storage)."""

import contextlib
import errno
import os
import secrets
import socket
import stat
import threading
from pathlib import Path

import pytest

from staging.storage import (
    TEMP_PREFIX,
    TEMP_SUFFIX,
    DirectoryCache,
    DirectorySync,
    NotRegularFileError,
    SizeMismatchError,
    SourceChangedError,
    StagingCancelled,
    UnsafePathError,
    clean_relative_path,
    is_staged_intact,
    remove_dead_temporaries_beneath,
    resolve_under,
    stage_file,
    stage_linked,
    unlink_beneath,
)


@pytest.mark.parametrize(
    "raw", ["", "/", "../x", "a/../../x", "/etc/passwd", "a/\x00b", "a/..", "./.."]
)
def test_paths_that_could_leave_a_root_are_refused(raw):
    with pytest.raises(UnsafePathError):
        clean_relative_path(raw)


def test_repeated_slashes_and_dots_are_collapsed():
    assert clean_relative_path("a//b/./c") == "a/b/c"


def test_a_symlink_pointing_out_of_the_root_is_refused(tmp_path: Path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("secret")
    (root / "link").symlink_to(outside)
    with pytest.raises(UnsafePathError):
        resolve_under(root, "link/secret")


def test_a_symlink_inside_the_root_is_followed(tmp_path: Path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_text("x")
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    assert resolve_under(tmp_path, "alias/f") == (tmp_path / "real" / "f")


def test_a_copy_lands_complete_with_no_temporary_file_left(tmp_path: Path):
    source = tmp_path / "src.bin"
    source.write_bytes(os.urandom(300_000))
    destination = tmp_path / "out" / "deep" / "dst.bin"
    seen: list[int] = []

    how = stage_file(
        source, destination, expected_size=300_000, chunk_bytes=65_536, on_progress=seen.append
    )

    assert how == "copied"
    assert destination.read_bytes() == source.read_bytes()
    assert sum(seen) == 300_000
    assert sorted(p.name for p in destination.parent.iterdir()) == ["dst.bin"]


def test_an_intact_copy_is_not_copied_again(tmp_path: Path):
    source, destination = tmp_path / "src", tmp_path / "dst"
    source.write_bytes(b"abc")
    destination.write_bytes(b"abc")
    # A copy carries its archive file's mtime; the same size alone would not be trusted.
    os.utime(destination, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns))
    assert stage_file(source, destination, expected_size=3) == "skipped"


def test_a_hard_link_is_used_when_asked(tmp_path: Path):
    source, destination = tmp_path / "src", tmp_path / "staged" / "dst"
    source.write_bytes(b"abc")
    source.chmod(0o444)
    assert stage_file(source, destination, expected_size=3, hard_link=True) == "linked"
    assert destination.stat().st_ino == source.stat().st_ino


def test_an_archive_file_the_service_may_write_is_copied_not_linked(tmp_path: Path):
    source, destination = tmp_path / "src", tmp_path / "staged" / "dst"
    source.write_bytes(b"abc")
    source.chmod(0o644)  # its owner, this service, may write it

    assert stage_file(source, destination, expected_size=3, hard_link=True) == "copied"

    destination.chmod(0o644)
    destination.write_bytes(b"xyz")  # a write through the staging area...
    assert source.read_bytes() == b"abc"  # ...leaves the archive as it was


def test_a_size_mismatch_fails_and_leaves_nothing(tmp_path: Path):
    source, destination = tmp_path / "src", tmp_path / "out" / "dst"
    source.write_bytes(b"abcdef")
    with pytest.raises(SizeMismatchError):
        stage_file(source, destination, expected_size=3)
    assert not destination.exists()
    assert not list(tmp_path.glob("out/*"))


def test_a_cancel_between_chunks_removes_the_temporary_file(tmp_path: Path):
    source, destination = tmp_path / "src", tmp_path / "out" / "dst"
    source.write_bytes(os.urandom(200_000))
    with pytest.raises(StagingCancelled):
        stage_file(
            source, destination, expected_size=200_000, chunk_bytes=10_000, should_stop=lambda: True
        )
    assert not list((tmp_path / "out").iterdir())


def _failing_on_second_call(real, errno_number: int):
    """``real`` that works once, then raises ``errno_number`` (a kernel refusing mid-file)."""
    calls = []

    def fake(*args):
        calls.append(args)
        if len(calls) >= 2:
            raise OSError(errno_number, os.strerror(errno_number))
        return real(*args)

    return fake


@pytest.mark.parametrize("refusal", [errno.EXDEV, errno.ENOSYS], ids=["EXDEV", "ENOSYS"])
def test_a_copy_whose_kernel_copy_fails_mid_file_is_byte_identical(
    tmp_path: Path, monkeypatch, refusal
):
    source, destination = tmp_path / "src.bin", tmp_path / "out" / "dst.bin"
    source.write_bytes(os.urandom(300_000))
    monkeypatch.setattr(os, "copy_file_range", _failing_on_second_call(os.copy_file_range, refusal))

    stage_file(source, destination, expected_size=300_000, chunk_bytes=100_000)

    assert destination.read_bytes() == source.read_bytes()


def test_a_copy_whose_sendfile_also_fails_mid_file_is_byte_identical(tmp_path: Path, monkeypatch):
    source, destination = tmp_path / "src.bin", tmp_path / "out" / "dst.bin"
    source.write_bytes(os.urandom(300_000))
    monkeypatch.setattr(
        os, "copy_file_range", _failing_on_second_call(os.copy_file_range, errno.EXDEV)
    )
    monkeypatch.setattr(os, "sendfile", _failing_on_second_call(os.sendfile, errno.EINVAL))

    stage_file(source, destination, expected_size=300_000, chunk_bytes=70_000)

    assert destination.read_bytes() == source.read_bytes()


def test_a_short_written_copy_fails_and_never_takes_the_final_name(tmp_path: Path, monkeypatch):
    source, destination = tmp_path / "src.bin", tmp_path / "out" / "dst.bin"
    source.write_bytes(os.urandom(300_000))
    real = os.copy_file_range

    def claims_more_than_it_copies(src, dst, count, offset_src=None, offset_dst=None):
        real(src, dst, count // 2, offset_src, offset_dst)
        return count  # a counter that lies: only the file's own size can be trusted

    monkeypatch.setattr(os, "copy_file_range", claims_more_than_it_copies)

    with pytest.raises(SizeMismatchError):
        stage_file(source, destination, expected_size=300_000, chunk_bytes=100_000)

    assert not destination.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_a_same_size_edit_of_the_archive_file_is_staged_again(tmp_path: Path):
    source, destination = tmp_path / "src", tmp_path / "out" / "dst"
    source.write_bytes(b"version one")
    assert stage_file(source, destination, expected_size=11) == "copied"
    assert is_staged_intact(destination, source.stat())

    source.write_bytes(b"version two")
    later = source.stat().st_mtime_ns + 2_000_000_000
    os.utime(source, ns=(later, later))  # a filesystem with coarse timestamps still moves on

    assert not is_staged_intact(destination, source.stat())
    assert stage_file(source, destination, expected_size=11) == "copied"
    assert destination.read_bytes() == b"version two"


def test_a_directory_swapped_for_a_symlink_after_the_check_is_not_read_through(
    tmp_path: Path,
):
    archive, staging, outside = tmp_path / "archive", tmp_path / "staging", tmp_path / "outside"
    for directory in (archive / "d", staging, outside):
        directory.mkdir(parents=True)
    (archive / "d" / "f").write_bytes(b"public")
    (outside / "f").write_bytes(b"secret")
    source = resolve_under(archive, "d/f")
    destination = resolve_under(staging, "d/f")

    (archive / "d").rename(archive / "d.before")
    (archive / "d").symlink_to(outside)

    with pytest.raises(UnsafePathError, match="symbolic link"):
        stage_file(source, destination, expected_size=6)
    assert not (staging / "d" / "f").exists()


def test_a_directory_swapped_for_a_symlink_after_the_check_is_not_written_through(
    tmp_path: Path,
):
    archive, staging, outside = tmp_path / "archive", tmp_path / "staging", tmp_path / "outside"
    for directory in (archive, staging / "d", outside):
        directory.mkdir(parents=True)
    (archive / "f").write_bytes(b"public")
    source = resolve_under(archive, "f")
    destination = resolve_under(staging, "d/f")

    (staging / "d").rmdir()
    (staging / "d").symlink_to(outside)

    with pytest.raises(UnsafePathError, match="symbolic link"):
        stage_file(source, destination, expected_size=6)
    assert list(outside.iterdir()) == []


def test_a_fifo_in_place_of_a_file_fails_at_once_instead_of_blocking(tmp_path: Path):
    archive = tmp_path / "archive"
    archive.mkdir()
    os.mkfifo(archive / "f")
    outcome: list[BaseException | str] = []

    def stage() -> None:
        try:
            outcome.append(
                stage_file(resolve_under(archive, "f"), tmp_path / "staged" / "f", expected_size=0)
            )
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    thread = threading.Thread(target=stage, daemon=True)
    thread.start()
    thread.join(timeout=20)
    if thread.is_alive():
        # Release the reader blocked in open() so the test run can end.
        os.close(os.open(archive / "f", os.O_WRONLY | os.O_NONBLOCK))
        thread.join(timeout=5)
        pytest.fail("reading a FIFO blocked the copy")
    assert isinstance(outcome[0], NotRegularFileError)
    assert "not a regular file" in str(outcome[0])


def test_the_temporary_copy_is_created_exclusively_in_the_target_directory(
    tmp_path: Path, monkeypatch
):
    source, destination = tmp_path / "src", tmp_path / "out" / "dst"
    source.write_bytes(os.urandom(50_000))
    real_open, created = os.open, []

    def recording_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            created.append((os.fspath(path), flags))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", recording_open)
    temporaries: list[tuple[str, int]] = []

    def look(count: int) -> None:
        for entry in (tmp_path / "out").iterdir():
            temporaries.append((entry.name, entry.lstat().st_mode))

    stage_file(source, destination, expected_size=50_000, chunk_bytes=10_000, on_progress=look)

    assert created and all(flags & os.O_EXCL and flags & os.O_NOFOLLOW for _, flags in created)
    assert temporaries and all(name.startswith(TEMP_PREFIX) for name, _ in temporaries)


def test_a_copy_is_never_readable_by_more_users_than_its_archive_file(tmp_path: Path):
    source, destination = tmp_path / "src", tmp_path / "out" / "dst"
    source.write_bytes(os.urandom(50_000))
    source.chmod(0o600)
    modes: list[int] = []

    def look(count: int) -> None:
        modes.extend(stat.S_IMODE(p.lstat().st_mode) for p in (tmp_path / "out").iterdir())

    stage_file(source, destination, expected_size=50_000, chunk_bytes=10_000, on_progress=look)

    assert modes and all(mode & 0o077 == 0 for mode in modes)  # not while it is written either
    assert stat.S_IMODE(destination.stat().st_mode) == 0o600


def test_a_copy_keeps_its_group_bits_only_with_the_archive_files_group(tmp_path: Path):
    source, destination = tmp_path / "src", tmp_path / "out" / "dst"
    source.write_bytes(b"abc")
    source.chmod(0o4750)
    with contextlib.suppress(PermissionError):
        os.chown(source, -1, 4242)  # a group this service may not be in

    stage_file(source, destination, expected_size=3)

    copy, archived = destination.stat(), source.stat()
    assert copy.st_gid == archived.st_gid or stat.S_IMODE(copy.st_mode) & 0o070 == 0
    assert stat.S_IMODE(copy.st_mode) & ~0o777 == 0  # no set-id bit on a copy


def test_a_staged_copy_is_removed_beneath_its_root_and_never_through_a_symlink(tmp_path: Path):
    staging, outside = tmp_path / "staging", tmp_path / "outside"
    (staging / "d").mkdir(parents=True)
    outside.mkdir()
    (staging / "d" / "f").write_bytes(b"x")
    (outside / "f").write_bytes(b"keep")

    assert unlink_beneath(staging, "d/f") is True
    assert not (staging / "d" / "f").exists()
    assert unlink_beneath(staging, "d/f") is False

    (staging / "d").rmdir()
    (staging / "d").symlink_to(outside)
    with pytest.raises(UnsafePathError):
        unlink_beneath(staging, "d/f")
    assert (outside / "f").read_bytes() == b"keep"


def test_dead_temporaries_are_removed_from_every_directory_listed(tmp_path: Path):
    host = socket.gethostname()
    for directory in ("a", "a/b", "c"):
        (tmp_path / directory).mkdir(parents=True, exist_ok=True)
        (tmp_path / directory / f"{TEMP_PREFIX}x.{host}.{2**22 + 3}.0a1b{TEMP_SUFFIX}").write_bytes(
            b"half"
        )
    live = tmp_path / "a" / f"{TEMP_PREFIX}y.{host}.{os.getppid()}.ff{TEMP_SUFFIX}"
    live.write_bytes(b"being written")

    assert remove_dead_temporaries_beneath(tmp_path, ["a", "a/b", "a", "missing"]) == 2

    assert {p.name for p in (tmp_path / "a").iterdir()} == {"b", live.name}
    assert len(list((tmp_path / "c").iterdir())) == 1


@pytest.mark.parametrize("asks_md5", [False, True], ids=["kernel-copy", "hashing-copy"])
def test_an_archive_file_edited_during_its_copy_is_not_staged_and_tells_no_md5(
    tmp_path: Path, asks_md5
):
    source, destination = tmp_path / "src", tmp_path / "out" / "dst"
    told: list[str] = []
    source.write_bytes(os.urandom(50_000))

    def edit_once(count: int) -> None:
        if not edits:
            edits.append(count)
            with source.open("r+b") as archive:
                archive.write(b"edited")
            later = source.stat().st_mtime_ns + 1_000_000_000
            os.utime(source, ns=(later, later))

    edits: list[int] = []
    with pytest.raises(SourceChangedError):
        stage_file(
            source,
            destination,
            expected_size=50_000,
            chunk_bytes=10_000,
            on_progress=edit_once,
            on_md5=(lambda md5, copied: told.append(md5)) if asks_md5 else None,
        )
    assert list((tmp_path / "out").iterdir()) == []
    assert told == []


@pytest.mark.parametrize("hard_link", [False, True], ids=["copy", "link"])
def test_a_stop_asked_for_after_the_data_is_durable_publishes_nothing(tmp_path: Path, hard_link):
    source, destination = tmp_path / "src", tmp_path / "out" / "dst"
    source.write_bytes(os.urandom(30_000))
    os.utime(source, ns=(10**18, 10**18))  # in 2001: no temporary has it until it is given
    source.chmod(0o444)  # an archive file the service may not write can be linked
    durable: list[bool] = []

    def stop_once_written() -> bool:
        # True only for the last question, asked once the temporary has its data and the
        # archive file's mtime (given to it right before the fsync).
        archived = source.stat()
        complete = [
            p
            for p in (tmp_path / "out").iterdir()
            if (p.stat().st_size, p.stat().st_mtime_ns) == (30_000, archived.st_mtime_ns)
        ]
        durable.append(bool(complete))
        return bool(complete)

    with pytest.raises(StagingCancelled):
        stage_file(
            source,
            destination,
            expected_size=30_000,
            hard_link=hard_link,
            chunk_bytes=10_000,
            should_stop=stop_once_written,
        )

    assert durable[-1] is True and not any(durable[:-1])
    assert list((tmp_path / "out").iterdir()) == []


def test_a_file_whose_name_takes_the_longest_a_filesystem_allows_is_staged(tmp_path: Path):
    name = "é" * 127  # 254 bytes in UTF-8
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / name).write_bytes(b"abc")

    stage_file(
        resolve_under(tmp_path / "archive", name),
        resolve_under(tmp_path / "staging", name),
        expected_size=3,
    )

    assert (tmp_path / "staging" / name).read_bytes() == b"abc"


def test_a_batch_cache_resolves_like_resolve_under_and_reuses_each_directory(tmp_path: Path):
    (tmp_path / "real").mkdir()
    for name in ("f", "g"):
        (tmp_path / "real" / name).write_text(name)
    (tmp_path / "real" / "alias-of-g").symlink_to(tmp_path / "real" / "g")
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    cache = DirectoryCache()
    try:
        for relative in ("alias/f", "real/f", "alias/alias-of-g", "real/g"):
            found = cache.resolve(tmp_path, relative)
            expected = resolve_under(tmp_path, relative)
            assert (found, found.root_dir, found.relative_parts) == (
                expected,
                expected.root_dir,
                expected.relative_parts,
            )
        first = cache.parent(cache.resolve(tmp_path, "real/f"), create=False, sync=None)
        second = cache.parent(cache.resolve(tmp_path, "alias/g"), create=False, sync=None)
        assert first[0] == second[0] and (first[1], second[1]) == ("f", "g")
        with pytest.raises(UnsafePathError):
            cache.resolve(tmp_path / "real", "../f")
    finally:
        cache.close()


def test_a_directory_swapped_for_a_symlink_between_two_batches_is_refused(tmp_path: Path):
    archive, staging, outside = tmp_path / "archive", tmp_path / "staging", tmp_path / "outside"
    for directory in (archive / "d", staging, outside):
        directory.mkdir(parents=True)
    for name in ("f", "g"):
        (archive / "d" / name).write_bytes(b"public")
        (outside / name).write_bytes(b"secret")
    cache, sync = DirectoryCache(), DirectorySync()
    stage_file(
        cache.resolve(archive, "d/f"),
        cache.resolve(staging, "d/f"),
        expected_size=6,
        cache=cache,
        sync=sync,
    )
    sync.flush()
    cache.close()  # the batch ends
    source = cache.resolve(archive, "d/g")  # checked before the swap
    (archive / "d").rename(archive / "d.before")
    (archive / "d").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        stage_file(source, cache.resolve(staging, "d/g"), expected_size=6, cache=cache)
    cache.close()
    assert (staging / "d" / "f").read_bytes() == b"public"
    assert not (staging / "d" / "g").exists()


def test_deferred_directory_fsyncs_happen_once_per_directory_at_flush(tmp_path, monkeypatch):
    archive, staging = tmp_path / "archive", tmp_path / "staging"
    (archive / "d").mkdir(parents=True)
    staging.mkdir()
    for name in ("f", "g", "h"):
        (archive / "d" / name).write_bytes(b"x")
    synced, real_fsync = [], os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr("staging.storage.os.fsync", fsync)
    sync = DirectorySync()
    for name in ("f", "g", "h"):
        stage_file(
            resolve_under(archive, f"d/{name}"),
            resolve_under(staging, f"d/{name}"),
            expected_size=1,
            sync=sync,
        )
    assert synced == [] and len(sync) == 2  # staging (d made in it) and staging/d
    sync.flush()
    assert sorted(synced) == sorted([staging.stat().st_ino, (staging / "d").stat().st_ino])


def staged_names(directory: Path) -> tuple[list[str], list[str]]:
    """(final names, temporaries) in ``directory``."""
    names = sorted(os.listdir(directory))
    return [n for n in names if not n.startswith(TEMP_PREFIX)], [
        n for n in names if n.startswith(TEMP_PREFIX)
    ]


def deferred_copy(archive: Path, staging: Path, name: str, sync: DirectorySync, **options):
    return stage_file(
        resolve_under(archive, name),
        resolve_under(staging, name),
        expected_size=(archive / name).stat().st_size,
        sync=sync,
        defer_naming=True,
        **options,
    )


def test_a_deferred_copy_takes_its_name_only_at_the_flush(tmp_path: Path):
    archive, staging = tmp_path / "archive", tmp_path / "staging"
    archive.mkdir()
    (archive / "f").write_bytes(b"data")
    sync = DirectorySync()
    assert deferred_copy(archive, staging, "f", sync) == "copied"
    assert staged_names(staging)[0] == [] and len(staged_names(staging)[1]) == 1
    assert not is_staged_intact(staging / "f", (archive / "f").stat())
    sync.flush()
    assert staged_names(staging) == (["f"], [])
    assert (staging / "f").read_bytes() == b"data"
    assert is_staged_intact(staging / "f", (archive / "f").stat())


def test_a_copy_larger_than_a_chunk_is_named_at_once(tmp_path: Path):
    archive, staging = tmp_path / "archive", tmp_path / "staging"
    archive.mkdir()
    (archive / "big").write_bytes(b"x" * 10)
    sync = DirectorySync()
    assert deferred_copy(archive, staging, "big", sync, chunk_bytes=4) == "copied"
    assert staged_names(staging) == (["big"], [])
    sync.flush()


def test_a_full_batch_of_deferred_copies_is_named_by_the_call_that_fills_it(
    tmp_path: Path, monkeypatch
):
    archive, staging = tmp_path / "archive", tmp_path / "staging"
    archive.mkdir()
    for name in "abc":
        (archive / name).write_bytes(name.encode())
    monkeypatch.setattr(DirectorySync, "MAX_UNNAMED_FILES", 2)
    sync = DirectorySync()
    deferred_copy(archive, staging, "a", sync)
    assert staged_names(staging)[0] == []
    deferred_copy(archive, staging, "b", sync)
    assert staged_names(staging) == (["a", "b"], [])
    deferred_copy(archive, staging, "c", sync)
    assert staged_names(staging)[0] == ["a", "b"]
    sync.flush()
    assert staged_names(staging) == (["a", "b", "c"], [])


def test_closing_a_sync_removes_the_copies_it_had_not_named(tmp_path: Path):
    archive, staging = tmp_path / "archive", tmp_path / "staging"
    archive.mkdir()
    (archive / "f").write_bytes(b"data")
    sync = DirectorySync()
    deferred_copy(archive, staging, "f", sync)
    sync.close()  # the batch was abandoned (a lost lease)
    assert staged_names(staging) == ([], [])
    sync.flush()  # nothing left to name
    assert staged_names(staging) == ([], [])


def test_a_deferred_copy_that_cannot_be_made_durable_fails_every_later_flush(
    tmp_path: Path, monkeypatch
):
    archive, staging = tmp_path / "archive", tmp_path / "staging"
    archive.mkdir()
    for name in "ab":
        (archive / name).write_bytes(b"data")
    sync = DirectorySync()
    deferred_copy(archive, staging, "a", sync)
    real_fsync = os.fsync

    def failing_fsync(fd):
        raise OSError(errno.EIO, "injected")

    monkeypatch.setattr("staging.storage.os.fsync", failing_fsync)
    with pytest.raises(OSError, match="injected"):
        sync.flush()
    monkeypatch.setattr("staging.storage.os.fsync", real_fsync)
    assert staged_names(staging) == ([], [])
    # A copy counted as staged was lost: the batch it belongs to must never be recorded.
    deferred_copy(archive, staging, "b", sync)
    with pytest.raises(OSError, match="injected"):
        sync.flush()
    assert staged_names(staging) == ([], [])
    sync.close()


def test_a_deferred_copy_told_to_stop_is_not_handed_to_the_sync(tmp_path: Path):
    archive, staging = tmp_path / "archive", tmp_path / "staging"
    archive.mkdir()
    (archive / "f").write_bytes(b"data")
    sync = DirectorySync()
    with pytest.raises(StagingCancelled):
        deferred_copy(archive, staging, "f", sync, should_stop=lambda: True)
    sync.flush()
    assert staged_names(staging) == ([], [])


# --- Hard links of a batch, reached by name in directories opened once ------------------------


def linked_batch(tmp_path: Path, names: list[str], **kwargs) -> list[str]:
    """Stage ``names`` (under ``archive``, into ``staging``) by hard link as one batch."""
    cache, sync = DirectoryCache(), DirectorySync()
    try:
        archive, staging = tmp_path / "archive", tmp_path / "staging"
        return [stage_linked(cache, archive, staging, n, sync=sync, **kwargs) for n in names]
    finally:
        sync.flush()
        cache.close()


def read_only_files(root: Path, files: dict[str, bytes]) -> None:
    for relative, data in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
        (root / relative).chmod(0o444)  # an archive file the service may not write is linked


def test_a_link_batch_opens_each_directory_once_and_no_file(tmp_path: Path, monkeypatch):
    names = [f"d/f{n}" for n in range(6)]
    read_only_files(tmp_path / "archive", dict.fromkeys(names, b"x"))
    opened, real_open = [], os.open

    def counted_open(*args, **kwargs):
        opened.append(args[0])
        return real_open(*args, **kwargs)

    monkeypatch.setattr("staging.storage.os.open", counted_open)
    seen: list[int] = []

    assert linked_batch(tmp_path, names, expected_size=1, on_progress=seen.append) == ["linked"] * 6

    # archive, archive/d, staging, staging/d (not found, made, opened): and no file at all
    assert len(opened) == 5, opened
    assert seen == [1] * 6
    for name in names:
        staged, archived = tmp_path / "staging" / name, tmp_path / "archive" / name
        assert os.path.samestat(staged.stat(), archived.stat())
    assert linked_batch(tmp_path, names[:1], expected_size=1) == ["skipped"]


def _counted(real, name: str, asked: dict[str, int]):
    def counted(*args, **kwargs):
        asked[name] = asked.get(name, 0) + 1
        return real(*args, **kwargs)

    return counted


def test_a_link_batch_asks_the_kernel_about_each_directory_and_this_process_once(
    tmp_path: Path, monkeypatch
):
    """A link costs microseconds: per file only the look at it, the one at the destination, the
    link, the look at the link and the rename; what stays the same for a whole batch (each
    directory's identity, this process's user, groups and host name, a temporary name's random
    part) is not asked for again per file."""
    names = [f"d/f{n}" for n in range(6)]
    read_only_files(tmp_path / "archive", dict.fromkeys(names, b"x"))
    linked_batch(tmp_path, ["d/f0"], expected_size=1)  # whatever a first use asks, once
    asked: dict[str, int] = {}
    for module, name in [
        (os, "fstat"),
        (os, "geteuid"),
        (os, "getegid"),
        (os, "getgroups"),
        (socket, "gethostname"),
        (secrets, "token_hex"),
    ]:
        monkeypatch.setattr(module, name, _counted(getattr(module, name), name, asked))

    assert linked_batch(tmp_path, names[1:], expected_size=1) == ["linked"] * 5

    # archive/d and staging/d: one fstat each, whatever the number of files
    assert sum(asked.values()) <= 2, asked
    for name in names:
        staged, archived = tmp_path / "staging" / name, tmp_path / "archive" / name
        assert os.path.samestat(staged.stat(), archived.stat())


def test_a_link_batch_follows_a_symlink_inside_the_archive_and_refuses_one_leading_out(
    tmp_path: Path,
):
    archive, outside = tmp_path / "archive", tmp_path / "outside"
    read_only_files(archive, {"real/f": b"abc"})
    read_only_files(outside, {"secret": b"xyz"})
    (archive / "alias").symlink_to(archive / "real")
    (archive / "real" / "alias-of-f").symlink_to(archive / "real" / "f")
    (archive / "out").symlink_to(outside)
    (archive / "real" / "out-file").symlink_to(outside / "secret")

    assert linked_batch(tmp_path, ["alias/f", "real/alias-of-f"], expected_size=3) == [
        "linked",
        "linked",
    ]
    assert (tmp_path / "staging" / "alias" / "f").read_bytes() == b"abc"
    for leading_out in ("out/secret", "real/out-file"):
        with pytest.raises(UnsafePathError):
            linked_batch(tmp_path, [leading_out], expected_size=3)
    assert not (tmp_path / "staging" / "out").exists()
    assert not (tmp_path / "staging" / "real" / "out-file").exists()


def test_a_link_batch_refuses_a_directory_swapped_for_a_symlink_after_the_check(tmp_path: Path):
    archive, staging, outside = tmp_path / "archive", tmp_path / "staging", tmp_path / "outside"
    read_only_files(archive, {"d/f": b"public", "d/g": b"public"})
    (staging / "d").mkdir(parents=True)
    outside.mkdir()
    cache, sync = DirectoryCache(), DirectorySync()
    try:
        cache.resolve(staging, "d/g")  # the batch checked staging/d, before the swap
        (staging / "d").rmdir()
        (staging / "d").symlink_to(outside)
        with pytest.raises(UnsafePathError, match="symbolic link"):
            stage_linked(cache, archive, staging, "d/g", expected_size=6, sync=sync)
    finally:
        cache.close()
    assert list(outside.iterdir()) == []
    with pytest.raises(UnsafePathError):  # the next batch finds it leading out
        linked_batch(tmp_path, ["d/f"], expected_size=6)


def test_a_link_batch_copies_a_file_the_service_may_write_and_refuses_a_wrong_size(
    tmp_path: Path,
):
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "w").write_bytes(b"abc")  # writable by the service

    assert linked_batch(tmp_path, ["w"], expected_size=3) == ["copied"]
    with pytest.raises(SizeMismatchError):
        linked_batch(tmp_path, ["w"], expected_size=4)
