"""POSIX mechanics of staging: paths resolved beneath a root, files opened once through directory
descriptors, and crash-safe copies.

Nothing here touches the database. A path is checked once (``resolve_under``) and then used by
walking from its root one component at a time with ``O_NOFOLLOW``, holding each directory open,
so a directory swapped for a symlink after the check makes the operation fail instead of reaching
outside the root. Only regular files are read: a FIFO or a device in place of a catalogued file
is refused without being opened for reading, so it cannot block a worker.

A staged file appears under its final name only once it is complete: it is written to a
temporary created exclusively in the destination directory, fsynced, its size checked with
``fstat``, renamed, and the directory fsynced; a reader never sees half a file and a worker killed
mid-copy leaves nothing that looks staged. A worker staging many files defers the directory
fsyncs to a ``DirectorySync``, which fsyncs each directory once per batch before the batch is
recorded as done; it may defer the fsync and the rename of small copies too, so that one
journal commit makes a batch of them durable instead of one commit per file (they still take
their names only once durable). A copy carries its archive file's mtime, so "already
staged" means the same size and the same mtime as the archive file has now.
"""

import contextlib
import ctypes
import errno
import functools
import hashlib
import itertools
import os
import re
import secrets
import socket
import stat
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

TEMP_PREFIX = ".stagingsvc-"
TEMP_SUFFIX = ".part"

_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, for ever.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TEMPORARY_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# The errors with which a kernel refuses a fast copy path; the next, slower one is tried.
_FALLBACK_ERRNOS = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP)
_LINK_REFUSED_ERRNOS = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP)


def _writeback_starter() -> Callable[[int, int, int], None]:
    """``start(fd, offset, count)``: ask the kernel to begin writing a just-copied range to disk
    without waiting for it (Linux ``sync_file_range`` with ``SYNC_FILE_RANGE_WRITE``), so the
    disk writes one chunk while the next is copied and the fsync that makes the copy durable
    finds little left to do (``cp`` + ``sync`` gets the same overlap from the kernel's own
    writeback). It guarantees nothing: the fsync before the rename still does. Where the call
    is missing or refused, nothing is done."""
    try:
        sync_file_range = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return lambda fd, offset, count: None
    sync_file_range.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    sync_file_range.restype = ctypes.c_int
    write = 2  # SYNC_FILE_RANGE_WRITE

    def start(fd: int, offset: int, count: int) -> None:
        sync_file_range(fd, offset, count, write)  # an error here changes nothing: ignored

    return start


_start_writeback = _writeback_starter()


class UnsafePathError(ValueError):
    """A client-supplied path that would leave its root."""


class NotRegularFileError(UnsafePathError):
    """A path that must name a regular file names a FIFO, device, socket or directory."""


class StagingCancelled(Exception):
    """Raised from inside a copy when the job was cancelled; the temporary file is gone."""


class SizeMismatchError(OSError):
    """The source does not have the size the catalogue recorded (a permanent failure)."""


class SourceChangedError(OSError):
    """The archive file changed while it was copied; a later attempt copies it again."""

    def __init__(self, message: str):
        super().__init__(errno.EAGAIN, message)


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
    # The parts hold no slash: joined, they are the path PurePosixPath would spell (at a
    # fraction of its cost, paid once per line of a million-line request).
    return "/".join(parts)


class PathUnderRoot(type(Path())):
    """A path checked by ``resolve_under`` that remembers its root and its components beneath
    it, so that the functions of this module reach it again from the root through directory
    descriptors instead of trusting the path string a second time. Paths derived from it
    (``parent``, ``/``) carry no root and are used as plain paths."""

    root_dir: Path | None = None
    relative_parts: tuple[str, ...] = ()


def resolve_under(root: str | os.PathLike, relative: str) -> PathUnderRoot:
    """The absolute path of ``relative`` under ``root``, after following every symlink.

    Raises UnsafePathError if the result is outside ``root`` (``..``, an absolute path, or a
    symlink pointing out of the tree)."""
    cleaned = clean_relative_path(relative)
    real_root = Path(root).resolve()
    resolved = (real_root / cleaned).resolve()
    if resolved != real_root and not resolved.is_relative_to(real_root):
        raise UnsafePathError(f"path leaves its root: {relative!r}")
    return _under(real_root, resolved)


def _under(real_root: Path, resolved: Path) -> PathUnderRoot:
    path = PathUnderRoot(resolved)
    path.root_dir = real_root
    path.relative_parts = resolved.relative_to(real_root).parts
    return path


def _located(path: Path) -> tuple[Path, tuple[str, ...], str]:
    """(trusted directory, directories beneath it, final name) of a path to operate on."""
    parts = getattr(path, "relative_parts", ())
    if parts:
        return path.root_dir, parts[:-1], parts[-1]
    return path.parent, (), path.name


def _symlink_refusal(directory_fd: int, name: str, where: str) -> UnsafePathError | None:
    try:
        found = os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
    except OSError:
        return None
    if stat.S_ISLNK(found.st_mode):
        return UnsafePathError(
            f"{where!r} is a symbolic link (it was not when the path was checked); "
            "staging never follows one"
        )
    return None


class _Unnamed:
    """A copy written under its temporary name whose fsync and rename a DirectorySync holds."""

    __slots__ = ("directory_fd", "fd", "identity", "name", "temp")

    def __init__(
        self, directory_fd: int, fd: int, temp: str, name: str, identity: tuple[int, int] | None
    ):
        self.directory_fd, self.fd, self.temp, self.name = directory_fd, fd, temp, name
        self.identity = identity

    def forget(self, *, remove: bool) -> None:
        os.close(self.fd)
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp, dir_fd=self.directory_fd)
        os.close(self.directory_fd)


class DirectorySync:
    """Directories whose entries changed (a copy renamed in, a directory made) and must be
    fsynced before anyone is told the files are there: each once, however many files of a batch
    went into it. Holds a duplicate descriptor of each until ``flush``.

    It also holds the copies ``stage_file`` left unnamed (``defer_naming``): written, their
    writeback begun, not yet fsynced. ``name_deferred`` fsyncs them all, then renames each to
    its final name: the first fsync's journal commit carries the others' metadata, where one
    fsync right after each copy pays a commit per file. ``flush`` names them before it fsyncs
    the directories. A copy that could not be made durable or named fails every later
    ``flush``: its item is not to be recorded as staged."""

    # Unnamed copies held at most, so a batch's open descriptors and unsynced bytes stay few.
    MAX_UNNAMED_FILES = 64
    MAX_UNNAMED_BYTES = 64 * 1024**2

    def __init__(self):
        self._pending: dict[tuple[int, int], int] = {}
        self._unnamed: list[_Unnamed] = []
        self._unnamed_bytes = 0
        self._naming_failed: OSError | None = None

    def defer_naming(
        self,
        directory_fd: int,
        fd: int,
        temp: str,
        name: str,
        size: int,
        identity: tuple[int, int] | None = None,
    ) -> bool:
        """Take over ``fd`` (the written temporary ``temp``, to become ``name`` in
        ``directory_fd``, whose (device, inode) ``identity`` may be known); True when enough
        are held that the caller should name them now."""
        self._unnamed.append(_Unnamed(os.dup(directory_fd), fd, temp, name, identity))
        self._unnamed_bytes += size
        return (
            len(self._unnamed) >= self.MAX_UNNAMED_FILES
            or self._unnamed_bytes >= self.MAX_UNNAMED_BYTES
        )

    def name_deferred(self) -> None:
        """fsync every unnamed copy, then rename each into place (its directory then pending).
        On an error the copies not yet named are removed, and this and every later call raise
        it: the items they belong to were counted as copied and must not be recorded."""
        unnamed, self._unnamed, self._unnamed_bytes = self._unnamed, [], 0
        named = 0
        try:
            if self._naming_failed is not None:
                raise self._naming_failed
            for copy in unnamed:
                os.fsync(copy.fd)
            for copy in unnamed:
                os.replace(
                    copy.temp,
                    copy.name,
                    src_dir_fd=copy.directory_fd,
                    dst_dir_fd=copy.directory_fd,
                )
                named += 1
                self.add(copy.directory_fd, copy.identity)
        except BaseException as exc:
            # Even a warm shutdown's SystemExit here leaves items counted whose copies go.
            self._naming_failed = (
                exc if isinstance(exc, OSError) else OSError(errno.EINTR, "naming interrupted")
            )
            raise
        finally:
            for position, copy in enumerate(unnamed):
                copy.forget(remove=position >= named)

    def add(self, directory_fd: int, identity: tuple[int, int] | None = None) -> None:
        """Hold ``directory_fd`` for the next ``flush`` unless its directory (``identity``:
        its (device, inode) when the caller knows it, e.g. ``DirectoryCache.identity``) is
        held already."""
        if identity is None:
            found = os.fstat(directory_fd)
            identity = (found.st_dev, found.st_ino)
        key = identity
        if key not in self._pending:
            self._pending[key] = os.dup(directory_fd)

    def __len__(self) -> int:
        return len(self._pending)

    def flush(self) -> None:
        """Name the unnamed copies, then fsync every pending directory; the first error is
        raised once all were tried, and a directory that failed stays pending."""
        self.name_deferred()
        failed: OSError | None = None
        for key, fd in list(self._pending.items()):
            try:
                os.fsync(fd)
            except OSError as exc:
                failed = failed or exc
                continue
            os.close(fd)
            del self._pending[key]
        if failed is not None:
            raise failed

    def close(self) -> None:
        """Forget what is pending without syncing it (the batch it belonged to was abandoned);
        unnamed copies are removed."""
        for copy in self._unnamed:
            copy.forget(remove=True)
        self._unnamed, self._unnamed_bytes, self._naming_failed = [], 0, None
        for fd in self._pending.values():
            os.close(fd)
        self._pending.clear()


def _sync_directory(
    directory_fd: int, sync: DirectorySync | None, cache: "DirectoryCache | None" = None
) -> None:
    if sync is None:
        os.fsync(directory_fd)
    else:
        sync.add(directory_fd, cache.identity(directory_fd) if cache is not None else None)


class DirectoryCache:
    """A batch's view of its roots: each path's directory resolved once (``resolve``) and each
    directory opened once, walked from its root as ``_open_directories`` walks it, its
    descriptor lent to every file of the batch that lives there (``parent``). Closed at the
    end of the batch, so a directory swapped for a symlink meanwhile is walked again (and
    refused) by the next one."""

    def __init__(self):
        self._resolved: dict[tuple[str, str], tuple[Path, str, tuple[str, ...], bool]] = {}
        self._fds: dict[tuple[Path, tuple[str, ...]], int] = {}
        # (device, inode) of the lent descriptors a DirectorySync was given, asked once each.
        self._identities: dict[int, tuple[int, int]] = {}

    def _directory(self, root: str | os.PathLike, head: str) -> tuple[Path, str, tuple, bool]:
        """(real root, resolved directory, its parts beneath the root, whether it is inside
        the root) of directory ``head`` (a cleaned path) under ``root``, resolved once."""
        key = (os.fspath(root), head)
        known = self._resolved.get(key)
        if known is None:
            real_root = Path(root).resolve()
            directory = (real_root / head).resolve() if head else real_root
            inside = directory == real_root or directory.is_relative_to(real_root)
            parts = directory.relative_to(real_root).parts if inside else ()
            known = self._resolved[key] = (real_root, os.fspath(directory), parts, inside)
        return known

    def resolve(self, root: str | os.PathLike, relative: str) -> "PathUnderRoot":
        """``resolve_under`` with the directory part of ``relative`` resolved once per batch;
        a final component that is a symlink is resolved in full, as ``resolve_under`` does."""
        cleaned = clean_relative_path(relative)
        head, _, name = cleaned.rpartition("/")
        real_root, directory, parts, inside = self._directory(root, head)
        candidate = os.path.join(directory, name)
        if not inside or os.path.islink(candidate):
            return resolve_under(root, relative)
        path = PathUnderRoot(candidate)
        path.root_dir = real_root
        path.relative_parts = (*parts, name)
        return path

    def parent(self, path: Path, *, create: bool, sync: "DirectorySync | None") -> tuple[int, str]:
        """A lent descriptor of the directory holding ``path`` (not to be closed), and the
        name of ``path`` in it."""
        root, directories, name = _located(path)
        return self._opened(root, directories, create=create, sync=sync), name

    def directory_fd(
        self, root: str | os.PathLike, head: str, *, create: bool, sync: "DirectorySync | None"
    ) -> int | None:
        """A lent descriptor of directory ``head`` (a cleaned path) under ``root``, resolved
        and walked as ``resolve`` and ``parent`` do; None when it leads out of the root."""
        real_root, _, parts, inside = self._directory(root, head)
        if not inside:
            return None
        return self._opened(real_root, parts, create=create, sync=sync)

    def identity(self, fd: int) -> tuple[int, int]:
        """(device, inode) of the directory of descriptor ``fd``, which this cache lent: it
        stays open, so the same number names the same directory until ``close``."""
        known = self._identities.get(fd)
        if known is None:
            found = os.fstat(fd)
            known = self._identities[fd] = (found.st_dev, found.st_ino)
        return known

    def _opened(self, root: Path, directories: tuple[str, ...], *, create: bool, sync) -> int:
        key = (root, directories)
        fd = self._fds.get(key)
        if fd is None:
            if create:
                root.mkdir(parents=True, exist_ok=True)  # the configured root, trusted as it is
            fd = _open_directories(root, directories, create=create, sync=sync)
            self._fds[key] = fd
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._identities.clear()
        self._resolved.clear()


@contextlib.contextmanager
def _parent_of(
    path: Path,
    *,
    create: bool = False,
    sync: DirectorySync | None = None,
    cache: DirectoryCache | None = None,
):
    """(descriptor, name) of the directory holding ``path``: lent by ``cache``, or opened here
    and closed on exit."""
    if cache is not None:
        yield cache.parent(path, create=create, sync=sync)
        return
    fd, name = _open_parent(path, create=create, sync=sync)
    try:
        yield fd, name
    finally:
        os.close(fd)


def _open_child_directory(
    directory_fd: int, name: str, where: str, *, create: bool, sync: DirectorySync | None = None
) -> int:
    try:
        return os.open(name, _DIRECTORY_FLAGS, dir_fd=directory_fd)
    except FileNotFoundError:
        if not create:
            raise
    except NotADirectoryError as exc:
        raise _symlink_refusal(directory_fd, name, where) or exc from None
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, dir_fd=directory_fd)
        # The new entry must survive a crash as long as the file renamed into it will.
        _sync_directory(directory_fd, sync)
    return _open_child_directory(directory_fd, name, where, create=False)


def _open_directories(
    root: Path, directories: tuple[str, ...], *, create: bool, sync: DirectorySync | None = None
) -> int:
    """A descriptor of ``root/directories``, reached one component at a time without following
    a symlink; with ``create``, missing directories are made."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for depth, name in enumerate(directories):
            where = "/".join(directories[: depth + 1])
            child = _open_child_directory(fd, name, where, create=create, sync=sync)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_parent(
    path: Path, *, create: bool = False, sync: DirectorySync | None = None
) -> tuple[int, str]:
    """A descriptor of the directory holding ``path``, and the name of ``path`` in it."""
    root, directories, name = _located(path)
    if create:
        root.mkdir(parents=True, exist_ok=True)  # the configured root, trusted as it is
    return _open_directories(root, directories, create=create, sync=sync), name


def _kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "directory",
        stat.S_ISFIFO: "FIFO",
        stat.S_ISSOCK: "socket",
        stat.S_ISCHR: "character device",
        stat.S_ISBLK: "block device",
        stat.S_ISLNK: "symbolic link",
    }
    return next((kind for test, kind in kinds.items() if test(mode)), "special file")


def _open_regular(path: Path, cache: DirectoryCache | None = None) -> tuple[int, os.stat_result]:
    """A read descriptor of the regular file at ``path`` and its ``fstat``. Anything else is
    refused before it is opened for reading (opening a device can have effects of its own)."""
    try:
        with _parent_of(path, cache=cache) as (directory_fd, name):
            seen = os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
            if stat.S_ISREG(seen.st_mode):
                fd = os.open(name, _READ_FLAGS, dir_fd=directory_fd)
    except OSError as exc:
        # Named by the whole path, not the component the walk stopped at.
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    if not stat.S_ISREG(seen.st_mode):
        raise NotRegularFileError(f"{path} is a {_kind(seen.st_mode)}, not a regular file")
    opened = os.fstat(fd)
    if not stat.S_ISREG(opened.st_mode):  # swapped between the look and the open
        os.close(fd)
        raise NotRegularFileError(f"{path} is a {_kind(opened.st_mode)}, not a regular file")
    return fd, opened


def open_regular_file(path: Path) -> BinaryIO:
    """``path`` opened for reading beneath its root, refused unless it is a regular file."""
    fd, _ = _open_regular(path)
    return os.fdopen(fd, "rb", buffering=0)


def stat_beneath(path: Path) -> os.stat_result:
    """What is at ``path`` (a symlink is described, not followed), reached beneath its root."""
    directory_fd, name = _open_parent(path)
    try:
        return os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
    finally:
        os.close(directory_fd)


def regular_file_size(root: str, relative: str) -> int | None:
    """Size of the regular file at ``relative`` under ``root``; None if there is none. Raises
    IsADirectoryError for a directory and OSError when the file system cannot answer."""
    try:
        info = resolve_under(root, relative).stat()
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(relative)
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def mark_copy_stale(path: Path) -> bool:
    """Give the staged copy at ``path`` an mtime no archive file has (the epoch), so that it
    no longer passes as staged and the next copy is renamed over it; readers keep their bytes.
    A hard link is left alone: its mtime is the archive file's own. False when nothing was
    marked."""
    directory_fd, name = _open_parent(path)
    try:
        found = os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
        if not stat.S_ISREG(found.st_mode) or found.st_nlink > 1:
            return False
        os.utime(name, ns=(0, 0), dir_fd=directory_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    finally:
        os.close(directory_fd)
    return True


def unlink_beneath(root: str | os.PathLike, relative: str) -> bool:
    """Remove the file at ``relative`` under ``root`` through directory descriptors (no symlink
    followed on the way); False when it is not there."""
    parts = PurePosixPath(clean_relative_path(relative)).parts
    try:
        directory_fd = _open_directories(Path(root), parts[:-1], create=False)
    except FileNotFoundError:
        return False
    try:
        os.unlink(parts[-1], dir_fd=directory_fd)
    except FileNotFoundError:
        return False
    finally:
        os.close(directory_fd)
    return True


def rename_aside_beneath(root: str | os.PathLike, relative: str, prefix: str) -> str | None:
    """Rename the file at ``relative`` under ``root`` to a new name of ``prefix`` and a random
    part in the same directory, through directory descriptors (no symlink followed on the way):
    a reader no longer finds it under its name, and ``unlink_beneath`` removes it later. The
    new relative path, or None when nothing is there."""
    parts = PurePosixPath(clean_relative_path(relative)).parts
    try:
        directory_fd = _open_directories(Path(root), parts[:-1], create=False)
    except FileNotFoundError:
        return None
    aside = f"{prefix}{secrets.token_hex(16)}"
    try:
        os.rename(parts[-1], aside, src_dir_fd=directory_fd, dst_dir_fd=directory_fd)
    except FileNotFoundError:
        return None
    finally:
        os.close(directory_fd)
    return str(PurePosixPath(*parts[:-1], aside))


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _is_intact(directory_fd: int, name: str, source: os.stat_result) -> bool:
    try:
        staged = os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(staged.st_mode):
        return False
    if _same_file(staged, source):
        return True  # a hard link: the archive's own inode
    # The copy was given the archive file's mtime when it was made (see _copy_to_temporary):
    # a same-size edit of the archive file moves its mtime away from the copy's.
    return staged.st_size == source.st_size and staged.st_mtime_ns == source.st_mtime_ns


def is_staged_intact(destination: Path, source: os.stat_result) -> bool:
    """True if ``destination`` is a regular file made from the archive file as ``source``
    describes it now: its hard link, or a copy of the same size and mtime."""
    try:
        directory_fd, name = _open_parent(destination)
    except FileNotFoundError:
        return False
    try:
        return _is_intact(directory_fd, name, source)
    finally:
        os.close(directory_fd)


def _copy_data(
    source_fd: int,
    target_fd: int,
    size: int,
    chunk_bytes: int,
    on_progress: Callable[[int], None],
    on_bytes: Callable[[memoryview], None] | None = None,
) -> int:
    """Copy with copy_file_range (in-kernel, reflink on filesystems that support it), falling
    back to sendfile and then to pread/pwrite where the kernel refuses. Every method writes at
    the offset it read from: copy_file_range with explicit offsets never moves the target's
    file position, which sendfile writes at.

    With ``on_bytes`` the data goes through this process from the first byte (pread/pwrite),
    and ``on_bytes`` is given every byte written, once and in file order: the kernel's paths
    never show the data to the process, so a hash fed by them would miss part of the file."""
    copied = 0
    if on_bytes is not None:
        method = "readwrite"
    else:
        method = "copy_file_range" if hasattr(os, "copy_file_range") else "sendfile"
    while copied < size:
        want = min(chunk_bytes, size - copied)
        try:
            if method == "copy_file_range":
                done = os.copy_file_range(source_fd, target_fd, want, copied, copied)
            elif method == "sendfile":
                os.lseek(target_fd, copied, os.SEEK_SET)
                done = os.sendfile(target_fd, source_fd, copied, want)
            else:
                done = _read_write(source_fd, target_fd, want, copied, on_bytes)
        except OSError as exc:
            if method != "readwrite" and exc.errno in _FALLBACK_ERRNOS:
                method = "sendfile" if method == "copy_file_range" else "readwrite"
                continue
            raise
        if done == 0:
            break  # the source shrank under us; the size check reports it
        if done < size:  # a file of one chunk is fsynced at once: nothing to overlap
            _start_writeback(target_fd, copied, done)
        copied += done
        on_progress(done)
    return copied


def _read_write(
    source_fd: int,
    target_fd: int,
    count: int,
    offset: int,
    on_bytes: Callable[[memoryview], None] | None,
) -> int:
    data = os.pread(source_fd, count, offset)
    done = os.pwrite(target_fd, data, offset)
    if on_bytes is not None:
        # A short write is resumed from where it stopped: only what was written counts now.
        on_bytes(memoryview(data)[:done])
    return done


def _give_mode_of(target_fd: int, source: os.stat_result) -> None:
    """The copy keeps the archive file's permission bits (not set-id ones) but may be read by
    no one the archive file's own mode kept out: the group bits stay only when the copy can
    take the archive file's group."""
    mode = stat.S_IMODE(source.st_mode) & 0o777
    try:
        os.fchown(target_fd, -1, source.st_gid)
    except OSError:  # not a member of that group (or a filesystem without groups)
        mode &= ~0o070
    os.fchmod(target_fd, mode)


def _copy_to_temporary(
    source_fd: int,
    source: os.stat_result,
    directory_fd: int,
    temp: str,
    chunk_bytes: int,
    on_chunk: Callable[[int], None],
    on_bytes: Callable[[memoryview], None] | None = None,
    *,
    keep_unsynced: bool = False,
) -> int | None:
    """Write the temporary, fsynced; with ``keep_unsynced`` it is not fsynced but its
    writeback is begun, and its descriptor returned open for whoever fsyncs it later."""
    # 0600 while it is written: a half copy is readable by no one else.
    fd = os.open(temp, _TEMPORARY_FLAGS, 0o600, dir_fd=directory_fd)
    try:
        _copy_data(source_fd, fd, source.st_size, chunk_bytes, on_chunk, on_bytes)
        _give_mode_of(fd, source)
        os.utime(fd, ns=(source.st_atime_ns, source.st_mtime_ns))
        if keep_unsynced:
            _start_writeback(fd, 0, 0)  # 0 bytes: to the end of the file
        else:
            os.fsync(fd)
        written = os.fstat(fd).st_size
        if written != source.st_size:
            raise SizeMismatchError(f"the copy has {written} bytes, expected {source.st_size}")
        after = os.fstat(source_fd)
        if (after.st_size, after.st_mtime_ns) != (source.st_size, source.st_mtime_ns):
            raise SourceChangedError("the archive file changed while it was copied")
    except BaseException:
        os.close(fd)
        raise
    if keep_unsynced:
        return fd
    os.close(fd)
    return None


def _writable_by_service(found: os.stat_result) -> bool:
    """Whether the archive file's permission bits let this service's user or groups write it
    (root's power to write anything aside). A hard link to such a file would let a write to the
    staged copy change the archive."""
    if found.st_mode & stat.S_IWOTH:
        return True
    user, groups = _service_identity()
    if found.st_uid == user:
        return bool(found.st_mode & stat.S_IWUSR)
    if found.st_gid in groups:
        return bool(found.st_mode & stat.S_IWGRP)
    return False


@functools.cache
def _service_identity() -> tuple[int, frozenset[int]]:
    """This process's effective user and its groups, asked once per process (a worker never
    changes them once it stages): three system calls per file were a large part of a link."""
    return os.geteuid(), frozenset({os.getegid(), *os.getgroups()})


def _link_temporary(
    source: Path,
    opened: os.stat_result,
    directory_fd: int,
    temp: str,
    cache: DirectoryCache | None = None,
) -> bool:
    """Hard-link the archive file as ``temp``; False where the filesystem refuses, or when the
    name no longer leads to the file that was opened (then a copy of what was opened is made)."""
    with _parent_of(source, cache=cache) as (source_directory_fd, name):
        return _link_as(source_directory_fd, name, directory_fd, temp, opened)


def _link_as(
    source_directory_fd: int, name: str, directory_fd: int, temp: str, opened: os.stat_result
) -> bool:
    """Hard-link ``name`` of ``source_directory_fd`` as ``temp`` in ``directory_fd``; False
    where the filesystem refuses, or when the name no longer leads to the file ``opened`` (a
    symlink, another file): that link is removed, never published."""
    try:
        os.link(
            name,
            temp,
            src_dir_fd=source_directory_fd,
            dst_dir_fd=directory_fd,
            follow_symlinks=False,
        )
    except OSError as exc:
        if exc.errno in _LINK_REFUSED_ERRNOS:
            return False
        raise
    if not _same_file(os.stat(temp, dir_fd=directory_fd, follow_symlinks=False), opened):
        os.unlink(temp, dir_fd=directory_fd)
        return False
    return True


def stage_linked(
    cache: DirectoryCache,
    archive_root: str | os.PathLike,
    staging_root: str | os.PathLike,
    relative: str,
    *,
    expected_size: int,
    sync: DirectorySync,
    on_progress: Callable[[int], None] = lambda n: None,
    should_stop: Callable[[], bool] = lambda: False,
    on_staged: Callable[[os.stat_result], None] | None = None,
    **copying,
) -> str:
    """``stage_file`` with ``hard_link`` for the file at ``relative`` under both roots, at the
    cost of the link: the path cleaned once, each directory resolved and opened once per batch
    (``cache``), and the file reached by name in it: a look at it, one at the destination, the
    link, a look at the link and the rename. Anything else (a symlink or no regular file at the
    name, a directory leading out of a root, a file the service may write, a filesystem that
    refuses links) goes through ``stage_file``, which resolves, refuses or copies as it always
    does (``copying``: its other arguments)."""
    cleaned = clean_relative_path(relative)
    head, _, name = cleaned.rpartition("/")
    how = found = None
    with contextlib.suppress(OSError):  # stage_file says what went wrong, by the whole path
        source_fd = cache.directory_fd(archive_root, head, create=False, sync=None)
        if source_fd is not None:
            found = os.stat(name, dir_fd=source_fd, follow_symlinks=False)
    if found is not None and stat.S_ISREG(found.st_mode) and found.st_size == expected_size:
        destination_fd = cache.directory_fd(staging_root, head, create=True, sync=sync)
        if destination_fd is not None:
            identity = cache.identity(destination_fd)
            how = _link_by_name(source_fd, destination_fd, name, found, should_stop, sync, identity)
    if how is None:
        return stage_file(
            cache.resolve(archive_root, cleaned),
            cache.resolve(staging_root, cleaned),
            expected_size=expected_size,
            hard_link=True,
            on_progress=on_progress,
            should_stop=should_stop,
            on_staged=on_staged,
            sync=sync,
            cache=cache,
            **copying,
        )
    on_progress(expected_size)
    if on_staged is not None:
        on_staged(found)
    return how


def _link_by_name(
    source_fd: int,
    destination_fd: int,
    name: str,
    found: os.stat_result,
    should_stop: Callable[[], bool],
    sync: DirectorySync,
    identity: tuple[int, int],
) -> str | None:
    """ "skipped" or "linked" (its directory, of (device, inode) ``identity``, added to
    ``sync``), or None for ``stage_file``."""
    if _is_intact(destination_fd, name, found):
        # Renamed in by a worker that may have died before its fsync.
        sync.add(destination_fd, identity)
        return "skipped"
    if _writable_by_service(found):
        return None
    temp = _temp_name(name)
    renamed = False
    try:
        # A name that leads elsewhere since the look is left to stage_file.
        if not _link_as(source_fd, name, destination_fd, temp, found):
            return None
        if should_stop():
            raise StagingCancelled()
        os.replace(temp, name, src_dir_fd=destination_fd, dst_dir_fd=destination_fd)
        renamed = True
    finally:
        if not renamed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=destination_fd)
    sync.add(destination_fd, identity)
    return "linked"


def stage_file(
    source: Path,
    destination: Path,
    *,
    expected_size: int,
    hard_link: bool = False,
    chunk_bytes: int = 8 * 1024**2,
    on_progress: Callable[[int], None] = lambda n: None,
    should_stop: Callable[[], bool] = lambda: False,
    on_md5: Callable[..., None] | None = None,
    on_staged: Callable[[os.stat_result], None] | None = None,
    sync: DirectorySync | None = None,
    cache: DirectoryCache | None = None,
    defer_naming: bool = False,
) -> str:
    """Put a complete copy of ``source`` at ``destination``; returns how ("skipped", "linked",
    "copied"). Paths from ``resolve_under`` are reached beneath their roots. With ``hard_link``
    the copy is a hard link where the filesystem allows it and the archive file is not
    writable by the service.

    With ``on_md5`` a copy reads the archive file through this process (pread/pwrite instead
    of the kernel's copy paths), hashes it on the way, and once the copy has its final name (or
    is handed to ``sync`` to be named) calls ``on_md5(md5=<hex>, copied=<stat>)`` with the
    archive file's stat, which held from the start of the copy to its end (a file that changed
    meanwhile raises SourceChangedError instead). A file already staged or hard-linked is not
    read, and ``on_md5`` is not called.

    ``should_stop`` is polled at chunk boundaries, and once more when the data is written and
    fsynced, right before it takes the final name; when it answers True the temporary file is
    removed, nothing is renamed, and StagingCancelled raised. A size mismatch raises OSError
    and leaves nothing.

    ``on_staged`` is given the archive file's stat once the copy is in place (or was found
    intact): the copy has its size and mtime. With ``sync`` the directories whose entries
    changed are added to it instead of being fsynced here; the caller fsyncs them (``flush``)
    before it tells anyone the file is staged. With ``cache`` the directories of both paths
    are reached through the descriptors it lends (opened once per batch).

    With ``sync`` and ``defer_naming``, a copy of at most one chunk is left under its temporary
    name, unsynced, when this returns "copied": ``sync`` fsyncs and names it at its ``flush`` (or
    once it holds a batch of such copies, on a later call), so the copy is in place only after
    the flush the caller makes before it tells anyone. ``should_stop`` is then asked last when
    the data is written: a copy that passed it is named at the flush (a caller that must publish
    nothing more, having lost its lease, ``close``s ``sync`` instead)."""
    source_fd, opened = _open_regular(source, cache)
    try:
        if opened.st_size != expected_size:
            raise SizeMismatchError(
                f"source is {opened.st_size} bytes, the catalogue says {expected_size}"
            )
        with _parent_of(destination, create=True, sync=sync, cache=cache) as (directory_fd, name):
            if _is_intact(directory_fd, name, opened):
                on_progress(expected_size)
                how = "skipped"
                if sync is not None:
                    # Renamed in by a worker that may have died before its directory fsync.
                    _sync_directory(directory_fd, sync, cache)
            else:
                how = _stage_into(
                    source,
                    source_fd,
                    opened,
                    directory_fd,
                    name,
                    hard_link=hard_link,
                    chunk_bytes=chunk_bytes,
                    on_progress=on_progress,
                    should_stop=should_stop,
                    on_md5=on_md5,
                    sync=sync,
                    cache=cache,
                    defer_naming=defer_naming and sync is not None and expected_size <= chunk_bytes,
                )
    finally:
        os.close(source_fd)
    if on_staged is not None:
        on_staged(opened)
    return how


def _stage_into(
    source: Path,
    source_fd: int,
    opened: os.stat_result,
    directory_fd: int,
    name: str,
    *,
    hard_link: bool,
    chunk_bytes: int,
    on_progress: Callable[[int], None],
    should_stop: Callable[[], bool],
    on_md5: Callable[..., None] | None,
    sync: DirectorySync | None,
    cache: DirectoryCache | None,
    defer_naming: bool,
) -> str:
    temp = _temp_name(name)
    md5, renamed, unsynced_fd, batch_full = None, False, None, False
    try:
        linkable = hard_link and not _writable_by_service(opened)
        if linkable and _link_temporary(source, opened, directory_fd, temp, cache):
            how = "linked"
        else:
            on_chunk = functools.partial(
                _progress_or_stop, on_progress=on_progress, should_stop=should_stop
            )
            # A new hash per copy: one fed by an earlier, failed attempt would be wrong.
            md5 = hashlib.md5(usedforsecurity=False) if on_md5 is not None else None
            unsynced_fd = _copy_to_temporary(
                source_fd,
                opened,
                directory_fd,
                temp,
                chunk_bytes,
                on_chunk,
                on_bytes=md5.update if md5 is not None else None,
                keep_unsynced=defer_naming,
            )
            how = "copied"
        # Asked last, with the data written (durable, unless the naming is deferred): a worker
        # that must stop (a cancel, or its lease lost to another worker) publishes nothing
        # under the final name.
        if should_stop():
            raise StagingCancelled()
        if unsynced_fd is not None:
            identity = cache.identity(directory_fd) if cache is not None else None
            batch_full = sync.defer_naming(
                directory_fd, unsynced_fd, temp, name, opened.st_size, identity
            )
            unsynced_fd, renamed = None, True  # the temporary is sync's now
        else:
            os.replace(temp, name, src_dir_fd=directory_fd, dst_dir_fd=directory_fd)
            renamed = True
            _sync_directory(directory_fd, sync, cache)
    finally:
        if unsynced_fd is not None:
            os.close(unsynced_fd)
        if not renamed:  # one system call (and one exception) less per staged file
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=directory_fd)
    if batch_full:
        sync.name_deferred()
    if how == "linked":
        on_progress(opened.st_size)
    elif md5 is not None:
        on_md5(md5=md5.hexdigest(), copied=opened)
    return how


def _progress_or_stop(
    done: int, on_progress: Callable[[int], None], should_stop: Callable[[], bool]
) -> None:
    on_progress(done)
    if should_stop():
        raise StagingCancelled()


def _temp_name(name: str) -> str:
    # Host and pid in the name let a later attempt tell a dead copier's leftover from a live
    # one; the last part (random per process, then counted) keeps two copies in one process
    # apart, and a leftover of an earlier process that had the same pid apart from ours. The
    # name is shortened (in bytes, as the filesystem counts) so the temporary of a 255-byte
    # name still fits: a name of at most 25 characters has at most 100 bytes.
    host_and_pid, random_part, counter = _temp_name_parts()
    short = name if len(name) <= 25 else os.fsencode(name)[:100].decode(errors="ignore")
    return f"{TEMP_PREFIX}{short}.{host_and_pid}.{random_part}{next(counter):x}{TEMP_SUFFIX}"


@functools.cache
def _temp_name_parts() -> tuple[str, str, "itertools.count[int]"]:
    """What every temporary name of this process shares, asked once per process (a host name
    and random bytes per file were a large part of a link's cost)."""
    return f"{socket.gethostname()}.{os.getpid()}", secrets.token_hex(4), itertools.count()


# A forked worker has its own pid (and draws its own random part); its identity is asked
# again too, in case the parent was not yet the user it runs as.
os.register_at_fork(
    after_in_child=lambda: (_temp_name_parts.cache_clear(), _service_identity.cache_clear())
)


def _dead_temporary_pid(name: str, host: str) -> int | None:
    """The pid of the copier of this host that wrote temporary ``name``, or None."""
    match = re.fullmatch(
        rf"{re.escape(TEMP_PREFIX)}.*\.{re.escape(host)}\.(\d+)(?:\.[0-9a-f]+)?"
        rf"{re.escape(TEMP_SUFFIX)}",
        name,
        flags=re.DOTALL,
    )
    return int(match[1]) if match else None


def pid_alive(pid: int) -> bool:
    """Whether a process of this host has that pid (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_dead_temporaries_in(directory_fd: int) -> int:
    host, removed = socket.gethostname(), 0
    with os.scandir(directory_fd) as entries:
        names = [entry.name for entry in entries if entry.name.startswith(TEMP_PREFIX)]
    for name in names:
        pid = _dead_temporary_pid(name, host)
        if pid is None or pid == os.getpid() or pid_alive(pid):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=directory_fd)
            removed += 1
    return removed


def remove_dead_temporaries_beneath(root: str | os.PathLike, directories: Iterable[str]) -> int:
    """Delete the temporary files that processes of this host left mid-copy when they died (a
    killed worker cannot clean up after itself) in each of ``directories`` under ``root``,
    listing each directory once; returns how many. Directories that do not exist are skipped."""
    removed = 0
    for directory in sorted(set(directories)):
        parts = PurePosixPath(clean_relative_path(directory)).parts if directory else ()
        try:
            directory_fd = _open_directories(Path(root), parts, create=False)
        except (FileNotFoundError, NotADirectoryError, UnsafePathError):
            continue
        try:
            removed += _remove_dead_temporaries_in(directory_fd)
        finally:
            os.close(directory_fd)
    return removed


def remove_dead_temporaries(destination: Path) -> int:
    """``remove_dead_temporaries_beneath`` for the one directory that holds ``destination``."""
    return remove_dead_temporaries_beneath(destination.parent, [""])
