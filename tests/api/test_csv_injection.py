"""Every CSV the service writes keeps a spreadsheet from running a cell: a cell that starts
with =, +, -, @, a tab or a carriage return gets a leading ' (OWASP's rule)."""

import csv
import io

import pytest

from staging.api.renderers import CSVRenderer
from staging.models import JobStatus
from staging.result_files import ResultsWriter
from staging.roles import Role
from staging.services.job_results import job_result_file_set
from tests.api.helpers import content_of, make_job

pytestmark = pytest.mark.django_db

F = JobStatus.FINISHED
FORMULAS = ['=HYPERLINK("http://x","y")', "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]


def csv_rows(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(content_of(response).decode(), newline="")))


def test_result_cells_that_look_like_formulas_are_quoted(api_as):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=F, items={path: F for path in FORMULAS})

    response = client.get(f"/api/v1/jobs/{job.uuid}/result", HTTP_ACCEPT="text/csv")

    paths = sorted(row["path"] for row in csv_rows(response))
    assert paths == sorted("'" + path for path in FORMULAS)


def test_cells_of_a_results_file_are_quoted_too(api_as, results_root):
    client = api_as(Role.DATA_USER)
    job = make_job(owner=client.user, status=F, items={}, task="scan")
    with ResultsWriter(job_uuid=job.uuid, columns=["path", "size"]) as out:
        out.write(["=cmd|' /C calc'!A0", -5])
        name = out.commit()
    job_result_file_set(job_id=job.pk, name=name)

    response = client.get(f"/api/v1/jobs/{job.uuid}/result", HTTP_ACCEPT="text/csv")

    rows = csv_rows(response)
    assert [(r["path"], r["size"]) for r in rows] == [("'=cmd|' /C calc'!A0", "-5")]


def test_the_csv_renderer_quotes_formula_cells_and_keeps_numbers():
    rendered = CSVRenderer().render([{"name": "=1+1", "count": -3, "note": "fine"}]).decode()

    assert list(csv.DictReader(io.StringIO(rendered))) == [
        {"name": "'=1+1", "count": "-3", "note": "fine"}
    ]
