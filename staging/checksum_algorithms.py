"""Checksums of files, read in chunks so a file of any size costs constant memory. Nothing here
touches the database."""

import hashlib
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from staging.storage import StagingCancelled, open_regular_file

# The algorithms the catalogue keeps (File.md5, File.sha256, File.adler32), strongest first.
ALGORITHMS = ("sha256", "md5", "adler32")
CHUNK_BYTES = 1024 * 1024


class _Adler32:
    """zlib's running Adler-32 behind the hashlib interface; hex as 8 digits, as tools print it."""

    def __init__(self) -> None:
        self.value = 1  # Adler-32 of no data

    def update(self, data) -> None:
        self.value = zlib.adler32(data, self.value)

    def hexdigest(self) -> str:
        return f"{self.value:08x}"


def new_hasher(algorithm: str):
    if algorithm == "adler32":
        return _Adler32()
    if algorithm in ("md5", "sha256"):
        return hashlib.new(algorithm)
    raise ValueError(
        f"unknown checksum algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}"
    )


def file_checksum(
    path: Path,
    algorithm: str,
    *,
    chunk_bytes: int = CHUNK_BYTES,
    on_progress: Callable[[int], None] = lambda n: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> tuple[str, int]:
    """The hex checksum of the regular file at ``path`` and how many bytes were read.
    ``should_stop`` is polled between chunks; when it answers True, StagingCancelled is raised."""
    # Beneath its root for a path from resolve_under, and never a FIFO that would block.
    with open_regular_file(path) as source:
        return stream_checksum(
            source,
            algorithm,
            chunk_bytes=chunk_bytes,
            on_progress=on_progress,
            should_stop=should_stop,
        )


def stream_checksum(
    source: BinaryIO,
    algorithm: str,
    *,
    chunk_bytes: int = CHUNK_BYTES,
    on_progress: Callable[[int], None] = lambda n: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> tuple[str, int]:
    """As ``file_checksum``, of a file already open (unbuffered, binary), read to its end."""
    hasher = new_hasher(algorithm)
    buffer = bytearray(chunk_bytes)
    view = memoryview(buffer)
    total = 0
    while count := source.readinto(buffer):
        hasher.update(view[:count])
        total += count
        on_progress(count)
        if should_stop():
            raise StagingCancelled()
    return hasher.hexdigest(), total
