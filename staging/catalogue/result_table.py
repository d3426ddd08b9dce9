"""A job's results as its task declares them (columns, rows, summary), for the result APIs."""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from staging.catalogue.registry import task_type_get
from staging.models import Item, Job
from staging.result_files import results_file_read
from staging.selectors import RESULT_COLUMNS, job_item_rows


@dataclass
class ResultTable:
    """A job's results: named columns, rows read lazily, and the summary beside them."""

    columns: tuple[str, ...]
    rows: Iterator[Sequence]
    summary: dict


def job_result_table(*, job: Job) -> ResultTable:
    """The job's results as its task declares them: rows from its results file when it has
    one (a scan), else one row per item; the summary is the job's outcome (plus, for tasks of
    one item, what that item found)."""
    task = task_type_get(job.task)
    summary = dict(job.result or {})
    if task is not None and task.summary_from_item:
        summary.update(
            Item.objects.filter(job=job).order_by("pk").values_list("result", flat=True).first()
            or {}
        )
    if job.result_file:
        columns, rows = results_file_read(job.result_file)
        return ResultTable(columns, rows, summary)
    if task is not None and task.results_in_file:
        # Its work wrote no file (it failed, was cancelled, or has not run yet): no rows.
        return ResultTable(tuple(task.columns_for(job)), iter(()), summary)
    columns = task.columns_for(job) if task is not None else RESULT_COLUMNS
    return ResultTable(tuple(columns), job_item_rows(job=job, columns=columns), summary)
