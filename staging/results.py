"""Job results as rows of named columns: the results file that holds results too large for a
database row, and the CSV and JSON encodings clients read them in.

A results file lives under ``settings.RESULTS_ROOT`` and is named after its job. It is JSON
lines: the first line the list of column names, then one JSON array per row, so values keep
their types (sizes stay numbers) and a reader needs no schema. A file is written under a
temporary name and renamed when complete, so a reader never sees half a result and a worker
killed mid-write leaves nothing that looks finished. Nothing here touches the database.
"""

import contextlib
import csv
import io
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from django.conf import settings

from staging.errors import ServiceError

RESULTS_SUFFIX = ".jsonl"
# Rows per chunk of an encoded stream: a few hundred rows make one write to the client.
CHUNK_ROWS = 500


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


def _cell(value):
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else value


def _chunks(rows: Iterable[Sequence], size: int = CHUNK_ROWS) -> Iterator[list[Sequence]]:
    chunk: list[Sequence] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# A spreadsheet takes a cell starting with one of these for a formula (=HYPERLINK(...) in a
# file name would run); OWASP's rule is to put a ' before it, which the spreadsheet hides.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value):
    """``value`` as a CSV cell that no spreadsheet evaluates: text that starts like a formula
    gets a leading '; numbers (a negative size) stay as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def encode_csv(columns: Sequence[str], rows: Iterable[Sequence]) -> Iterator[str]:
    """A header line, then one line per row (RFC 4180 quoting by the csv module; an empty
    cell for a missing value; formula-like text quoted by ``csv_safe``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for chunk in _chunks(rows):
        writer.writerows([["" if c is None else csv_safe(_cell(c)) for c in row] for row in chunk])
        yield out.getvalue()
        out.seek(0)
        out.truncate()
    if out.tell():
        yield out.getvalue()


def encode_json_lines(columns: Sequence[str], rows: Iterable[Sequence]) -> Iterator[str]:
    """One JSON object per line (application/x-ndjson), keys in column order."""
    for chunk in _chunks(rows):
        yield "".join(
            json.dumps(dict(zip(columns, map(_cell, row), strict=True))) + "\n" for row in chunk
        )


def encode_json(head: dict, columns: Sequence[str], rows: Iterable[Sequence]) -> Iterator[str]:
    """``head`` with a ``files`` array of one object per row, written as the rows arrive."""
    opening = json.dumps({**head, "files": []})
    yield opening[:-2]  # everything up to the empty array's closing "]}"
    first = True
    for chunk in _chunks(rows):
        text = ",".join(
            json.dumps(dict(zip(columns, map(_cell, row), strict=True))) for row in chunk
        )
        yield text if first else "," + text
        first = False
    yield "]}"
