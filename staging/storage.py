"""POSIX mechanics of staging: safe path resolution and crash-safe copies.

Nothing here touches the database. A staged file appears under its final name only once it is
complete (temporary name in the destination directory, fsync, rename), so a reader never sees half
a file and a worker killed mid-copy leaves nothing that looks staged.
"""

import errno
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path, PurePosixPath

TEMP_PREFIX = ".stagingsvc-"
TEMP_SUFFIX = ".part"


class UnsafePathError(ValueError):
    """A client-supplied path that would leave its root."""


class StagingCancelled(Exception):
    """Raised from inside a copy when the job was cancelled; the temporary file is gone."""


# The one wording of a refused path, in every dialect: it says what a path must look like, not
# that the path leaves the archive (``/run1/x`` does not; it is just not written as we read it).
RELATIVE_PATH_RULE = "paths are relative to the archive root: no leading /, no .."


def clean_relative_path(raw: str) -> str:
    """Normalise a client-supplied relative path, refusing anything that could leave a root.

    Repeated and trailing slashes and ``.`` segments are collapsed; a leading ``/``, any ``..``
    segment (even one that would come back, as in ``run1/../run1/x``: a path has one spelling),
    NUL bytes and empty paths are refused with ``RELATIVE_PATH_RULE`` and the path as given."""
    if not isinstance(raw, str) or not raw.strip("/"):
        raise UnsafePathError(f"{RELATIVE_PATH_RULE}, and name a file; got {raw!r}")
    if "\x00" in raw:
        raise UnsafePathError(f"{RELATIVE_PATH_RULE}, and no NUL byte; got {raw!r}")
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if raw.startswith("/") or ".." in parts:
        raise UnsafePathError(f"{RELATIVE_PATH_RULE}; got {raw!r}")
    if not parts:
        raise UnsafePathError(f"{RELATIVE_PATH_RULE}, and name a file; got {raw!r}")
    return str(PurePosixPath(*parts))


def resolve_under(root: str | os.PathLike, relative: str) -> Path:
    """The absolute path of ``relative`` under ``root``, after following every symlink.

    Raises UnsafePathError if the result is outside ``root`` (``..``, an absolute path, or a
    symlink pointing out of the tree)."""
    cleaned = clean_relative_path(relative)
    real_root = Path(root).resolve()
    resolved = (real_root / cleaned).resolve()
    if resolved != real_root and not resolved.is_relative_to(real_root):
        raise UnsafePathError(f"path leaves its root: {relative!r}")
    return resolved


def is_staged_intact(destination: Path, expected_size: int) -> bool:
    """True if a regular file of the expected size is already at ``destination``."""
    try:
        stat = destination.lstat()
    except FileNotFoundError:
        return False
    return (
        os.path.isfile(destination)
        and not destination.is_symlink()
        and (stat.st_size == expected_size)
    )


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_data(
    source_fd: int,
    target_fd: int,
    size: int,
    chunk_bytes: int,
    on_progress: Callable[[int], None],
) -> int:
    """Copy with copy_file_range (in-kernel, reflink on filesystems that support it), falling
    back to sendfile and then to read/write where the kernel refuses."""
    copied = 0
    method = "copy_file_range" if hasattr(os, "copy_file_range") else "sendfile"
    while copied < size:
        want = min(chunk_bytes, size - copied)
        try:
            if method == "copy_file_range":
                done = os.copy_file_range(source_fd, target_fd, want, copied, copied)
            elif method == "sendfile":
                done = os.sendfile(target_fd, source_fd, copied, want)
            else:
                data = os.pread(source_fd, want, copied)
                done = os.write(target_fd, data)
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                method = "sendfile" if method == "copy_file_range" else "readwrite"
                continue
            raise
        if done == 0:
            break  # the source shrank under us; the size check reports it
        copied += done
        on_progress(done)
    return copied


def stage_file(
    source: Path,
    destination: Path,
    *,
    expected_size: int,
    hard_link: bool = False,
    chunk_bytes: int = 8 * 1024**2,
    on_progress: Callable[[int], None] = lambda n: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> str:
    """Put a complete copy of ``source`` at ``destination``; returns how ("skipped", "linked",
    "copied").

    ``should_stop`` is polled at chunk boundaries; when it answers True the temporary file is
    removed and StagingCancelled raised. A size mismatch raises OSError and leaves nothing."""
    if is_staged_intact(destination, expected_size):
        on_progress(expected_size)
        return "skipped"
    actual_size = source.stat().st_size
    if actual_size != expected_size:
        raise SizeMismatchError(
            f"source is {actual_size} bytes, the catalogue says {expected_size}"
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(destination)
    temp = destination.parent / _temp_name(destination.name, socket.gethostname(), os.getpid())
    temp.unlink(missing_ok=True)
    try:
        if hard_link and _try_link(source, temp):
            os.replace(temp, destination)
            on_progress(expected_size)
            return "linked"
        with open(source, "rb") as src, open(temp, "wb") as dst:
            copied = _copy_data(
                src.fileno(),
                dst.fileno(),
                actual_size,
                chunk_bytes,
                lambda n: _progress_or_stop(n, on_progress, should_stop),
            )
            dst.flush()
            os.fsync(dst.fileno())
        if copied != expected_size:
            raise SizeMismatchError(f"copied {copied} bytes, expected {expected_size}")
        shutil.copymode(source, temp)
        os.replace(temp, destination)
        _fsync_directory(destination.parent)
        return "copied"
    finally:
        temp.unlink(missing_ok=True)


class SizeMismatchError(OSError):
    """The source does not have the size the catalogue recorded (a permanent failure)."""


def _progress_or_stop(
    done: int, on_progress: Callable[[int], None], should_stop: Callable[[], bool]
) -> None:
    on_progress(done)
    if should_stop():
        raise StagingCancelled()


def _try_link(source: Path, temp: Path) -> bool:
    try:
        os.link(source, temp, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP):
            return False
        raise
    return True


def _temp_name(name: str, host: str, pid: int) -> str:
    # Host and pid in the name let a later attempt tell a dead copier's leftover from a live one.
    return f"{TEMP_PREFIX}{name}.{host}.{pid}{TEMP_SUFFIX}"


def pid_alive(pid: int) -> bool:
    """Whether a process of this host has that pid (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_temporaries(destination: Path) -> int:
    """Delete temporary files for ``destination`` left by processes of this host that died
    mid-copy (a killed worker cannot clean up after itself); returns how many."""
    removed = 0
    host = socket.gethostname()
    prefix = f"{TEMP_PREFIX}{destination.name}.{host}."
    try:
        candidates = [p for p in destination.parent.iterdir() if p.name.startswith(prefix)]
    except FileNotFoundError:
        return 0
    for temp in candidates:
        pid = temp.name[len(prefix) : -len(TEMP_SUFFIX)]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            temp.unlink(missing_ok=True)
            removed += 1
    return removed
