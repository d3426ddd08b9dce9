"""catalogue_upsert_paths: client paths resolved safely under the archive root and turned into
catalogue entries from a stat, as a scan would."""

from pathlib import Path

import pytest

from staging.errors import ServiceError
from staging.models import File
from staging.services.catalogue import catalogue_scan, catalogue_upsert_paths
from staging.storage import TEMP_PREFIX

pytestmark = pytest.mark.django_db


def write(store, relative: str, data: bytes = b"x") -> Path:
    path = Path(store.archive_root) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_it_returns_entries_in_the_order_given_without_repeats(store):
    write(store, "b.txt", b"bb")
    write(store, "a/c.txt", b"ccc")

    files = catalogue_upsert_paths(store=store, paths=["b.txt", "a//c.txt", "./b.txt"])

    assert [(f.path, f.size) for f in files] == [("b.txt", 2), ("a/c.txt", 3)]
    assert [f.id for f in files] == [File.id_for("primary", p) for p in ("b.txt", "a/c.txt")]


def test_the_ids_are_those_a_scan_gives(store):
    write(store, "a.txt")
    (ours,) = catalogue_upsert_paths(store=store, paths=["a.txt"])
    catalogue_scan(store=store)
    assert File.objects.get().id == ours.id


def test_a_file_a_scan_found_gone_is_present_again_once_it_is_back(store):
    write(store, "a.txt")
    catalogue_scan(store=store)
    File.objects.update(present=False)
    (entry,) = catalogue_upsert_paths(store=store, paths=["a.txt"])
    assert entry.present


def test_a_symlink_inside_the_archive_is_followed(store):
    write(store, "real/data.bin", b"12345")
    (Path(store.archive_root) / "link.bin").symlink_to(Path(store.archive_root) / "real/data.bin")
    (entry,) = catalogue_upsert_paths(store=store, paths=["link.bin"])
    assert (entry.path, entry.size) == ("link.bin", 5)


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "out/secret", "a/../../x", "", "nul\x00"])
def test_paths_that_leave_the_archive_are_refused_naming_them(store, tmp_path, path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret").write_text("secret")
    (Path(store.archive_root) / "out").symlink_to(tmp_path / "elsewhere")
    write(store, "fine.txt")

    with pytest.raises(ServiceError) as refused:
        catalogue_upsert_paths(store=store, paths=["fine.txt", path])

    assert refused.value.field == "paths"
    assert refused.value.extra["unsafe_paths"] == [path]
    assert not File.objects.exists()


def test_missing_files_directories_and_our_temporary_files_are_unknown(store):
    write(store, "fine.txt")
    (Path(store.archive_root) / "adir").mkdir()
    write(store, f"x/{TEMP_PREFIX}half.part")

    with pytest.raises(ServiceError) as refused:
        catalogue_upsert_paths(
            store=store, paths=["fine.txt", "nope.txt", "adir", f"x/{TEMP_PREFIX}half.part"]
        )

    assert refused.value.extra["unknown_paths"] == ["nope.txt", "adir", f"x/{TEMP_PREFIX}half.part"]
    assert not File.objects.exists()
