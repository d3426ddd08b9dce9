"""A job's results file: results as rows of named columns, too large for a database row (the
CSV and JSON encodings clients read them in are staging.api.result_streams).

A results file lives under ``settings.RESULTS_ROOT`` and is named after its job. It is JSON
lines: the first line the list of column names, then one JSON array per row, so values keep
their types (sizes stay numbers) and a reader needs no schema. A file is written under a
temporary name and renamed when complete, so a reader never sees half a result and a worker
killed mid-write leaves nothing that looks finished. Nothing here touches the database.
"""

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from django.conf import settings

from staging.errors import ServiceError

RESULTS_SUFFIX = ".jsonl"


class ResultsGone(ServiceError):
    """The job says it has a results file but the file is gone (removed by hand, a lost disk):
    the results cannot be had any more."""

    status_code = 410
    title = "Gone"


def results_root() -> Path:
    return Path(settings.RESULTS_ROOT)


def results_file_name(job_uuid) -> str:
    return f"{job_uuid}{RESULTS_SUFFIX}"


def results_file_path(name: str) -> Path:
    """The absolute path of a results file. Names are ours (a job's uuid), never a client's,
    but a name that is not a plain file name is refused anyway."""
    if not name or name != Path(name).name or name.startswith("."):
        raise ValueError(f"not a results file name: {name!r}")
    return results_root() / name


class ResultsWriter:
    """Writes one job's results file: ``with ResultsWriter(job_uuid=…, columns=…) as out:
    out.write(row) …; name = out.commit()``. Leaving the block without ``commit`` (an error, a
    cancel) removes the partial file."""

    def __init__(self, *, job_uuid, columns: Sequence[str]):
        self.name = results_file_name(job_uuid)
        self.columns = tuple(columns)
        self.rows = 0
        self._final = results_file_path(self.name)
        self._final.parent.mkdir(parents=True, exist_ok=True)
        # pid in the temporary name: two deliveries of one sub-job never share a file.
        self._temp = self._final.with_name(f".{self.name}.{os.getpid()}.part")
        self._file = open(self._temp, "w", encoding="utf-8")  # noqa: SIM115 - closed in commit/close
        self._committed = False
        self._write_line(list(self.columns))

    def _write_line(self, values: list) -> None:
        self._file.write(json.dumps(values, separators=(",", ":"), ensure_ascii=False))
        self._file.write("\n")

    def write(self, row: Sequence) -> None:
        if len(row) != len(self.columns):
            raise ValueError(f"row has {len(row)} values for {len(self.columns)} columns")
        self._write_line(list(row))
        self.rows += 1

    def commit(self) -> str:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._temp, self._final)
        self._committed = True
        return self.name

    def close(self) -> None:
        if not self._committed:
            self._file.close()
            self._temp.unlink(missing_ok=True)

    def __enter__(self) -> "ResultsWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def results_file_read(name: str) -> tuple[tuple[str, ...], Iterator[list]]:
    """The columns of a results file and an iterator over its rows, read lazily (a file of
    millions of rows is streamed, never held in memory)."""
    try:
        handle = open(results_file_path(name), encoding="utf-8")  # noqa: SIM115 - closed below
    except FileNotFoundError as exc:
        raise ResultsGone(f"the results file of this job ({name}) is no longer there") from exc
    columns = tuple(json.loads(handle.readline() or "[]"))

    def rows() -> Iterator[list]:
        with handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)

    return columns, rows()


def results_file_delete(name: str) -> bool:
    """Remove a results file (and a partial one left by a dead writer); True if one was there."""
    if not name:
        return False
    path = results_file_path(name)
    existed = path.exists()
    path.unlink(missing_ok=True)
    for partial in path.parent.glob(f".{name}.*.part"):
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return existed
