"""How a job's results leave the service: CSV, JSON or JSON lines, streamed as they are read
(from the database in chunks, or from the job's results file), never built in memory. The task
status and result views answer with ``results_response``."""

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence

from django.http import StreamingHttpResponse

from staging.catalogue.result_table import job_result_table
from staging.models import Job
from staging.selectors import FAILED_STATUSES, job_error_text

# Rows per chunk of an encoded stream: a few hundred rows make one write to the client.
CHUNK_ROWS = 500

RESULT_MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "jsonl": "application/x-ndjson",
}


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


def results_stream(*, job: Job, fmt: str = "json") -> Iterator[str]:
    """The job's results as text chunks: ``csv`` (a header line, then a line per row),
    ``jsonl`` (an object per line) or ``json`` (the job's id, task, status and summary, with
    the rows as ``files``). A results file that has gone is ResultsGone (410) here, before the
    first byte is sent."""
    if fmt not in RESULT_MEDIA_TYPES:
        raise ValueError(f"unknown results format {fmt!r}")
    table = job_result_table(job=job)
    if fmt == "csv":
        return encode_csv(table.columns, table.rows)
    if fmt == "jsonl":
        return encode_json_lines(table.columns, table.rows)
    head = {
        "jobId": str(job.uuid),
        "task": job.task,
        "status": job.status,
        "summary": table.summary,
    }
    if job.status in FAILED_STATUSES:
        head["error"] = job_error_text(job=job)
    return encode_json(head, table.columns, table.rows)


def results_response(*, job: Job, fmt: str = "json", headers: dict | None = None):
    response = StreamingHttpResponse(
        results_stream(job=job, fmt=fmt), content_type=RESULT_MEDIA_TYPES[fmt]
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response
