"""How a job's results leave the service: CSV, JSON or JSON lines, streamed as they are read
(from the database in chunks, or from the job's results file), never built in memory. The task
status and result views answer with ``results_response``."""

from collections.abc import Iterator

from django.http import StreamingHttpResponse

from staging.catalogue.result_table import job_result_table
from staging.models import Job
from staging.results import encode_csv, encode_json, encode_json_lines
from staging.selectors import FAILED_STATUSES, job_error_text

RESULT_MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "jsonl": "application/x-ndjson",
}


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
