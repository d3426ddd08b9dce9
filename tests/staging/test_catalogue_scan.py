"""catalogue_scan: MD5s in the catalogue (read on disk stores, sidecars on tape stores,
incremental), and a walk that never leaves the archive through a symlink."""

import hashlib
import os
from pathlib import Path

import pytest

from staging import archive_walk
from staging.errors import ServiceError
from staging.models import File
from staging.services.catalogue import catalogue_scan

pytestmark = pytest.mark.django_db


def write(root: str, relative: str, data: bytes) -> Path:
    path = Path(root) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_a_scan_records_the_md5_of_every_file_of_a_disk_store(store):
    contents = {"a.txt": b"alpha\n", "deep/er/b.bin": os.urandom(3 * 1024 * 1024 + 5), "e": b""}
    for relative, data in contents.items():
        write(store.archive_root, relative, data)

    summary = catalogue_scan(store=store)

    assert summary.hashed == 3
    assert {f.path: f.md5 for f in File.objects.all()} == {
        relative: md5(data) for relative, data in contents.items()
    }


def test_an_unchanged_file_is_not_read_again_but_a_changed_one_is(store):
    same = write(store.archive_root, "same.txt", b"first")
    changed = write(store.archive_root, "changed.txt", b"first")
    catalogue_scan(store=store)
    # Same size and mtime, other bytes: only a re-read would notice, and the scan must not read.
    stat = same.stat()
    same.write_bytes(b"FIRST")
    os.utime(same, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed.write_bytes(b"second!")

    summary = catalogue_scan(store=store)

    assert (summary.unchanged, summary.updated, summary.hashed) == (1, 1, 1)
    assert File.objects.get(path="same.txt").md5 == md5(b"first")
    assert File.objects.get(path="changed.txt").md5 == md5(b"second!")


def test_an_unchanged_file_without_an_md5_gets_one(store):
    write(store.archive_root, "a.txt", b"alpha")
    catalogue_scan(store=store)
    File.objects.update(md5="", sha256="f" * 64)

    catalogue_scan(store=store)

    assert File.objects.values_list("md5", "sha256").get() == (md5(b"alpha"), "f" * 64)


def test_a_tape_store_takes_md5s_from_sidecars_and_never_reads_a_file(tape_store, monkeypatch):
    def no_reading(*args, **kwargs):
        raise AssertionError("a tape file was read")

    monkeypatch.setattr(archive_walk, "stream_checksum", no_reading)
    write(tape_store.archive_root, "run/a.tar", b"on tape")
    write(tape_store.archive_root, "run/a.tar.md5", f"{md5(b'on tape').upper()}  a.tar\n".encode())
    write(tape_store.archive_root, "run/b.tar", b"no sidecar")
    write(tape_store.archive_root, "run/c.tar", b"bad sidecar")
    write(tape_store.archive_root, "run/c.tar.md5", b"not a checksum\n")

    catalogue_scan(store=tape_store)

    hashes = dict(File.objects.filter(store=tape_store).values_list("path", "md5"))
    assert hashes["run/a.tar"] == md5(b"on tape")
    assert hashes["run/b.tar"] == ""
    assert hashes["run/c.tar"] == ""


def test_a_prefix_swapped_for_a_symlink_after_the_request_is_not_walked(store, tmp_path):
    outside = tmp_path / "outside"
    write(str(outside), "secret.txt", b"not ours")
    (Path(store.archive_root) / "data").mkdir()
    # The request checked "data" while it was a directory; then it became a symlink out.
    (Path(store.archive_root) / "data").rmdir()
    (Path(store.archive_root) / "data").symlink_to(outside, target_is_directory=True)

    with pytest.raises(ServiceError, match="not a directory"):
        catalogue_scan(store=store, prefix="data")

    assert not File.objects.exists()


def test_a_prefix_through_a_symlink_inside_the_root_is_refused_too(store):
    write(store.archive_root, "real/a.txt", b"a")
    (Path(store.archive_root) / "alias").symlink_to(
        Path(store.archive_root) / "real", target_is_directory=True
    )

    with pytest.raises(ServiceError):
        catalogue_scan(store=store, prefix="alias")

    assert not File.objects.exists()


def test_the_walk_never_descends_into_a_directory_symlink(store, tmp_path):
    write(str(tmp_path / "outside"), "secret.txt", b"not ours")
    write(store.archive_root, "real/a.txt", b"a")
    (Path(store.archive_root) / "out").symlink_to(tmp_path / "outside", target_is_directory=True)
    (Path(store.archive_root) / "loop").symlink_to(
        Path(store.archive_root) / "real", target_is_directory=True
    )

    catalogue_scan(store=store)

    assert list(File.objects.values_list("path", flat=True)) == ["real/a.txt"]


def test_a_scan_asked_for_through_a_symlinked_prefix_is_refused_at_once(client_for, store):
    write(store.archive_root, "real/a.txt", b"a")
    (Path(store.archive_root) / "alias").symlink_to(
        Path(store.archive_root) / "real", target_is_directory=True
    )

    response = client_for().post("/api/v1/tasks/scan/", {"prefix": "alias"}, format="json")

    assert response.status_code == 400
    assert (
        "alias is not a directory of store primary (symlinks are not followed)"
        in (response.json()["detail"])
    )
