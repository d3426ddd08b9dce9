"""Errors as a client reads them: paths beneath a store's roots are written relative to them."""

import errno
import os

from staging.client_errors import error_for_client, item_error_text, paths_relative
from staging.storage import NotRegularFileError, SizeMismatchError, UnsafePathError

ROOTS = ("/srv/archive", "/srv/staging/")


def test_a_missing_source_names_its_store_path():
    exc = FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "/srv/archive/run2/b.txt")
    assert error_for_client(exc, roots=ROOTS) == "source file not found: run2/b.txt"


def test_an_error_of_the_staging_side_names_its_store_path_too():
    exc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/srv/staging/run2")
    assert error_for_client(exc, roots=ROOTS) == "no space left on device: run2"


def test_a_root_reached_through_a_symlink_is_written_relative_too(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    exc = PermissionError(errno.EACCES, os.strerror(errno.EACCES), f"{real}/run2/p.txt")
    assert error_for_client(exc, roots=[tmp_path / "link"]) == "permission denied: run2/p.txt"


def test_a_path_inside_a_message_is_written_relative():
    exc = NotRegularFileError("/srv/archive/run2/f is a FIFO, not a regular file")
    assert error_for_client(exc, roots=ROOTS) == "run2/f is a FIFO, not a regular file"


def test_a_sibling_of_a_root_and_other_paths_are_left_alone():
    text = "/srv/archive2/x and /etc/passwd, not /srv/archive: /srv/archive/y"
    assert paths_relative(text, roots=ROOTS) == "/srv/archive2/x and /etc/passwd, not .: y"


def test_an_items_error_ends_with_its_path_when_the_reason_names_none():
    exc = SizeMismatchError("source is 5 bytes, the catalogue says 9")
    assert item_error_text(exc, path="a", roots=ROOTS) == (
        "source is 5 bytes, the catalogue says 9: a"
    )


def test_an_items_error_that_names_its_path_is_kept_as_it_is():
    refused = UnsafePathError("path leaves its root: 'run2/link'")
    missing = FileNotFoundError(errno.ENOENT, "No such file", "/srv/archive/run2/b.txt")
    assert item_error_text(refused, path="run2/link", roots=ROOTS) == (
        "path leaves its root: 'run2/link'"
    )
    assert item_error_text(missing, path="run2/b.txt", roots=ROOTS) == (
        "source file not found: run2/b.txt"
    )
