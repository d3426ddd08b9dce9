"""Walking an archive tree without ever leaving it, and reading what a scan learns from files
(their MD5, an MD5 sidecar, an md5sum listing). Nothing here touches the database.

Every directory is opened beneath its parent's descriptor with O_NOFOLLOW, so a directory
symlink is never followed and a directory swapped for a symlink while the walk runs is not
entered; files are opened the same way."""

import logging
import os
import re
import stat as stat_mode
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from staging.checksum_algorithms import stream_checksum
from staging.storage import TEMP_PREFIX, UnsafePathError, clean_relative_path

logger = logging.getLogger(__name__)

READ_CHUNK_BYTES = 4 * 1024**2


# Opening a directory of the walk: never through a symlink (O_NOFOLLOW on the last component,
# and every earlier component is a directory the walk itself opened the same way).
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
MD5_SIDECAR_SUFFIX = ".md5"
_MD5_SIDECAR = re.compile(r"\s*([0-9a-fA-F]{32})(?:\s|$)")
_SIDECAR_MAX_BYTES = 4096


@dataclass(frozen=True)
class FoundFile:
    """A regular file the walk found, with the open directory it was found in (valid until
    the walk moves on), so it is read without following any path again."""

    relative: str
    stat: os.stat_result
    directory_fd: int
    name: str
    # A symlink in the archive to a regular file inside the root: the resolved target.
    target: Path | None = None

    def open(self) -> int:
        if self.target is not None:
            return os.open(self.target, FILE_FLAGS)
        return os.open(self.name, FILE_FLAGS, dir_fd=self.directory_fd)

    def sidecar_md5(self) -> str:
        """The MD5 in ``<name>.md5`` beside the file (md5sum's format: the hex digest first),
        or "" when there is none or it holds no MD5."""
        try:
            fd = os.open(self.name + MD5_SIDECAR_SUFFIX, FILE_FLAGS, dir_fd=self.directory_fd)
        except OSError:
            return ""
        with os.fdopen(fd, "rb", buffering=0) as sidecar:
            if not stat_mode.S_ISREG(os.fstat(sidecar.fileno()).st_mode):
                return ""
            text = sidecar.read(_SIDECAR_MAX_BYTES).decode("ascii", errors="replace")
        match = _MD5_SIDECAR.match(text)
        return match.group(1).lower() if match else ""


def open_directory(root: Path, prefix: str) -> int:
    """An open descriptor of the directory at ``prefix`` under ``root``, reached one component
    at a time without following a symlink: a prefix checked when the scan was asked for may
    have been swapped for a symlink since, and must not lead the walk anywhere else."""
    fd = os.open(root, DIRECTORY_FLAGS)
    try:
        for part in PurePosixPath(prefix).parts if prefix else ():
            next_fd = os.open(part, DIRECTORY_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = next_fd
    except OSError:
        os.close(fd)
        raise
    return fd


def walk_regular_files(root: Path, directory_fd: int, relative_directory: str):
    """Yield a FoundFile for every regular file below the open directory, never descending into
    a directory symlink (each subdirectory is opened relative to its parent's descriptor with
    O_NOFOLLOW) and following file symlinks only while they stay inside ``root``.

    The order is stable from one walk to the next (a directory's files by name, then its
    subdirectories by name, depth first), so two scans of one tree list it alike."""
    try:
        entries = sorted(os.scandir(directory_fd), key=lambda entry: entry.name)
    except OSError as exc:
        logger.warning("scan: cannot read %s: %s", relative_directory or ".", exc)
        return
    subdirectories: list[str] = []
    for entry in entries:
        if entry.name.startswith(TEMP_PREFIX):
            continue
        relative = f"{relative_directory}/{entry.name}" if relative_directory else entry.name
        target = None
        try:
            if entry.is_dir(follow_symlinks=False):
                subdirectories.append(entry.name)
                continue
            if entry.is_symlink():
                target = (root / relative).resolve()
                if not target.is_relative_to(root) or not target.is_file():
                    continue
                info = target.stat()
            elif entry.is_file(follow_symlinks=False):
                info = entry.stat(follow_symlinks=False)
            else:
                continue
        except OSError as exc:
            logger.warning("scan: cannot stat %s: %s", relative, exc)
            continue
        yield FoundFile(relative, info, directory_fd, entry.name, target)
    for name in subdirectories:
        relative = f"{relative_directory}/{name}" if relative_directory else name
        try:
            sub_fd = os.open(name, DIRECTORY_FLAGS, dir_fd=directory_fd)
        except OSError as exc:  # gone, or swapped for a symlink since it was listed
            logger.warning("scan: not entering %s: %s", relative, exc)
            continue
        try:
            yield from walk_regular_files(root, sub_fd, relative)
        finally:
            os.close(sub_fd)


def file_md5(
    found: FoundFile,
    *,
    keep_alive: Callable[[], None] = lambda: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> str:
    """The MD5 of the file's bytes, or "" when it cannot be read or changed while it was read
    (then the hash would describe content the catalogue entry does not)."""
    try:
        with os.fdopen(found.open(), "rb", buffering=0) as source:
            before = os.fstat(source.fileno())
            if (before.st_size, before.st_mtime_ns) != (found.stat.st_size, found.stat.st_mtime_ns):
                return ""
            value, read = stream_checksum(
                source,
                "md5",
                chunk_bytes=READ_CHUNK_BYTES,
                on_progress=lambda count: keep_alive(),
                should_stop=should_stop,
            )
            after = os.fstat(source.fileno())
    except OSError as exc:
        logger.warning("scan: cannot read %s for its MD5: %s", found.relative, exc)
        return ""
    if read != found.stat.st_size or after.st_mtime_ns != found.stat.st_mtime_ns:
        return ""
    return value


_MD5SUM_LINE = re.compile(r"^(\\?)([0-9a-fA-F]{32}) [ *](.+)$")


def md5sum_entries(lines: Iterable[str]) -> Iterator[tuple[int, tuple[str, str] | None]]:
    """(line number, (clean path, md5)) per line of md5sum's output format; None in place of
    the pair for a line that is not one (or names a path outside the tree). Blank lines are
    skipped."""
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\n")
        if not line.strip():
            continue
        match = _MD5SUM_LINE.match(line)
        if match is None:
            yield number, None
            continue
        escaped, digest, name = match.groups()
        if escaped:  # md5sum escapes "\" and newlines in names, and marks the line with "\"
            name = name.replace("\\\\", "\0").replace("\\n", "\n").replace("\0", "\\")
        try:
            yield number, (clean_relative_path(name), digest.lower())
        except UnsafePathError:
            yield number, None
