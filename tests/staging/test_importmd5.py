"""manage.py importmd5: MD5s from md5sum's output onto catalogue entries (tape stores)."""

import hashlib
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from staging.models import File
from staging.services.catalogue import catalogue_scan

pytestmark = pytest.mark.django_db


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_md5sum_output_gives_a_tape_store_its_md5s(tape_store, tmp_path):
    for relative, data in {"run/a.tar": b"a", "run/b c.tar": b"b", "run/x\\y": b"x"}.items():
        (Path(tape_store.archive_root) / relative).parent.mkdir(parents=True, exist_ok=True)
        (Path(tape_store.archive_root) / relative).write_bytes(data)
    catalogue_scan(store=tape_store)
    listing = tmp_path / "md5sums.txt"
    listing.write_text(
        f"{md5(b'a').upper()}  run/a.tar\n"
        f"{md5(b'b')} *./run/b c.tar\n"
        f"\\{md5(b'x')}  run/x\\\\y\n"
        f"{md5(b'z')}  run/not-scanned.tar\n"
        "this is not a line of md5sum\n"
        f"{md5(b'q')}  ../outside\n"
    )
    out, err = StringIO(), StringIO()

    call_command("importmd5", str(listing), "--store", "tape", stdout=out, stderr=err)

    assert dict(File.objects.filter(store=tape_store).values_list("path", "md5")) == {
        "run/a.tar": md5(b"a"),
        "run/b c.tar": md5(b"b"),
        "run/x\\y": md5(b"x"),
    }
    assert out.getvalue().strip() == (
        "store tape: 3 MD5s recorded, 1 paths not in the catalogue, 2 lines not in md5sum's format"
    )
    assert "run/not-scanned.tar" in err.getvalue()
    assert "lines not in md5sum's format: 5, 6" in err.getvalue()


def test_an_unreadable_listing_is_refused_with_the_reason(store):
    with pytest.raises(CommandError, match="cannot read /nonexistent/md5sums"):
        call_command("importmd5", "/nonexistent/md5sums")
