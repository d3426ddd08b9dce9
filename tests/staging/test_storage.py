"""Safe path resolution and crash-safe copies (staging.storage)."""

import os
from pathlib import Path

import pytest

from staging.storage import (
    SizeMismatchError,
    StagingCancelled,
    UnsafePathError,
    clean_relative_path,
    resolve_under,
    stage_file,
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
    assert stage_file(source, destination, expected_size=3) == "skipped"


def test_a_hard_link_is_used_when_asked(tmp_path: Path):
    source, destination = tmp_path / "src", tmp_path / "staged" / "dst"
    source.write_bytes(b"abc")
    assert stage_file(source, destination, expected_size=3, hard_link=True) == "linked"
    assert destination.stat().st_ino == source.stat().st_ino


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
