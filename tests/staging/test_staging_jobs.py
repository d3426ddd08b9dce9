"""Every dialect creates its staging jobs through staging.services.staging_jobs: the same request
makes the same rows whichever API it came through, and nothing else calls the engine's writes."""

import ast
import json
from pathlib import Path

import pytest

from staging.models import Job
from staging.roles import Role

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
ENGINE_WRITES = {
    "job_create_staging",
    "job_create_staging_from_rows",
    "staging_rows_copy",
    "staging_rows_resolve",
}
# Where the writes are defined, and the one service that calls them.
ALLOWED = {"staging/services/jobs.py", "staging/services/staging_jobs.py"}


def by_dts(client, file):
    return client.post("/dts/staging", {"ids": [file.id]}, format="json")


def by_jobs_api_ids(client, file):
    return client.post("/api/v1/jobs/", {"ids": [file.id]}, format="json")


def by_jobs_api_paths(client, file):
    return client.post("/api/v1/jobs/", {"paths": [file.path]}, format="json")


def by_jobs_api_ndjson(client, file):
    body = json.dumps(file.id).encode() + b"\n"
    return client.post("/api/v1/jobs/", body, content_type="application/x-ndjson")


def by_jobs_api_ndjson_paths(client, file):
    body = json.dumps(file.path).encode() + b"\n"
    return client.post("/api/v1/jobs/?by=paths", body, content_type="application/x-ndjson")


def by_tasks_api(client, file):
    return client.post("/api/v1/tasks/stage/", {"ids": [file.id]}, format="json")


def by_durastore(client, file):
    return client.generic("POST", "/durastore/task/stage", file.path, content_type="text/plain")


def by_tape(client, file):
    return client.post("/tape/api/v1/stage", {"files": [{"path": f"/{file.path}"}]}, format="json")


DIALECTS = [
    by_dts,
    by_jobs_api_ids,
    by_jobs_api_paths,
    by_jobs_api_ndjson,
    by_jobs_api_ndjson_paths,
    by_tasks_api,
    by_durastore,
    by_tape,
]


def job_rows(job: Job) -> dict:
    """What the engine wrote for ``job``, without what differs by nature (ids, times, how the
    dialect named the files)."""
    return {
        "job": (job.task, job.status, job.files_total, job.bytes_total, job.store.slug),
        "subjobs": sorted(job.subjobs.values_list("sequence", "status", "files_total")),
        "items": sorted(
            job.items.values_list("path", "file_id", "size", "status", "subjob__sequence")
        ),
        "pins": sorted(job.pins.values_list("path", "store__slug")),
    }


@pytest.fixture
def reference_rows(client_for, archive_files):
    """The rows of a request for ``run1/a.txt`` by the DTS, the first dialect."""
    (file,) = archive_files({"run1/a.txt": b"alpha"})
    response = by_dts(client_for(Role.DATA_USER), file)
    assert response.status_code == 201, response.content
    return file, job_rows(Job.objects.get())


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.__name__)
def test_every_dialect_writes_the_same_rows_for_the_same_file(dialect, client_for, reference_rows):
    file, expected = reference_rows

    response = dialect(client_for(Role.DATA_USER), file)

    assert response.status_code in (200, 201, 202), response.content
    job = Job.objects.latest("pk")
    assert job_rows(job) == expected


def _calls_of_engine_writes(path: Path) -> set[str]:
    called = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Name) and node.id in ENGINE_WRITES:
            called.add(node.id)
        elif isinstance(node, ast.Attribute) and node.attr in ENGINE_WRITES:
            called.add(node.attr)
    return called


def test_only_the_staging_job_service_uses_the_engine_writes():
    users = {
        str(path.relative_to(ROOT)): sorted(used)
        for package in ("staging", "tasks")
        for path in sorted((ROOT / package).rglob("*.py"))
        if (used := _calls_of_engine_writes(path))
    }
    assert {path for path in users if path not in ALLOWED} == set(), users
