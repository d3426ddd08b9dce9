"""Where files are on tape: read by the scan from extended attributes, or imported from a tape
map with `manage.py tapemap import`."""

import os
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from staging.models import File
from staging.services.catalogue import catalogue_scan

pytestmark = pytest.mark.django_db


def located(store) -> dict[str, tuple[str, int | None]]:
    return {
        path: (vid, position)
        for path, vid, position in File.objects.filter(store=store).values_list(
            "path", "tape_vid", "tape_position"
        )
    }


def test_the_scan_reads_tape_locations_from_extended_attributes(tape_store):
    root = Path(tape_store.archive_root)
    for name, vid, position in (("a.bin", b"VOL001", b"17"), ("b.bin", b"VOL002", b"x")):
        (root / name).write_bytes(b"data")
        try:
            os.setxattr(root / name, "user.tape.vid", vid)
            os.setxattr(root / name, "user.tape.position", position)
        except OSError as exc:
            pytest.skip(f"no user extended attributes on this filesystem: {exc}")
    (root / "c.bin").write_bytes(b"none")

    catalogue_scan(store=tape_store)

    # A position that is not a whole number is left unknown; no VID: not on a known tape.
    assert located(tape_store) == {
        "a.bin": ("VOL001", 17),
        "b.bin": ("VOL002", None),
        "c.bin": ("", None),
    }


def test_tapemap_import_records_locations_and_reports_bad_lines(tape_store, tmp_path):
    root = Path(tape_store.archive_root)
    for name in ("run1/a.bin", "run1/b.bin"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    catalogue_scan(store=tape_store)
    tape_map = tmp_path / "map.csv"
    tape_map.write_text(
        "path,vid,position\n"
        "run1/a.bin,VOL001,3\n"
        "/run1/b.bin,VOL002,9\n"
        "run1/c.bin,VOL003,1\n"
        "run1/a.bin,VOL001\n"
        "run1/a.bin,VOL001,-4\n"
    )
    out, err = StringIO(), StringIO()

    call_command("tapemap", "import", "tape", str(tape_map), stdout=out, stderr=err)

    assert located(tape_store) == {"run1/a.bin": ("VOL001", 3), "run1/b.bin": ("VOL002", 9)}
    assert out.getvalue().strip() == (
        "store tape: 2 tape locations recorded, 1 paths not in the catalogue, 2 bad lines"
    )
    assert "not in the catalogue: run1/c.bin" in err.getvalue()
    assert "line 5: 2 fields; expected 3 (path,vid,position)" in err.getvalue()
    assert "line 6: position '-4' is not a whole number ≥ 0" in err.getvalue()


def test_tapemap_import_of_an_unknown_store_or_file_fails_clearly(tape_store, tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        call_command("tapemap", "import", "tape", str(tmp_path / "missing.csv"))
    with pytest.raises(CommandError):
        call_command("tapemap", "import", "nope", str(tmp_path / "missing.csv"))


def test_addstore_gives_a_tape_store_a_library_with_its_settings(tmp_path):
    from staging.models import TapeLibrary

    out = StringIO()
    call_command(
        "addstore",
        "tape2",
        "--kind=posix-tape",
        f"--archive-root={tmp_path / 'a'}",
        f"--staging-root={tmp_path / 's'}",
        "--tape-drives=3",
        "--tape-mount-seconds=45",
        "--recall-min-files=20",
        "--recall-max-wait=PT10M",
        stdout=out,
    )
    library = TapeLibrary.objects.get(store__slug="tape2")
    assert (library.drives, library.mount_seconds, library.min_files) == (3, 45, 20)
    assert library.max_wait.total_seconds() == 600 and library.scheduler


def test_addstore_refuses_a_library_on_a_posix_store(tmp_path):
    with pytest.raises(CommandError, match="only a posix-tape store has a tape library"):
        call_command(
            "addstore",
            "disk2",
            f"--archive-root={tmp_path / 'a'}",
            f"--staging-root={tmp_path / 's'}",
            "--tape-drives=2",
        )
    assert not File.objects.exists()
