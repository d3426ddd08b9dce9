"""One submit rule for every dialect that names files (API v1 jobs and tasks, DuraStore):

- a path names a file in the archive, scanned or not (an unscanned one is catalogued then);
- an id must come from the catalogue; names that match nothing are a 404 listing the first
  few and saying how many;
- a path is written relative to the archive root, and one refusal wording says how.
(The DTS sends catalogue ids only; the tape API's absolute paths are its own wire format.)"""

import json
from pathlib import Path

import pytest

from staging.models import File, Job
from staging.roles import Role
from tests.api.helpers import assert_problem

pytestmark = pytest.mark.django_db

RULE = "paths are relative to the archive root: no leading /, no .."


def jobs_api(client, paths=None, ids=None):
    body = {"paths": paths} if paths is not None else {"ids": ids}
    return client.post("/api/v1/jobs/", {"task": "stage", **body}, format="json")


def tasks_api(client, paths=None, ids=None):
    body = {"paths": paths} if paths is not None else {"ids": ids}
    return client.post("/api/v1/tasks/stage/", body, format="json")


def durastore(client, paths=None, ids=None):
    body = "\n".join(paths) if paths is not None else json.dumps({"ids": ids})
    return client.generic("POST", "/durastore/task/stage", body, content_type="text/plain")


DIALECTS = [jobs_api, tasks_api, durastore]
ACCEPTED = {jobs_api: 202, tasks_api: 202, durastore: 200}


@pytest.mark.parametrize("send", DIALECTS)
def test_a_file_no_scan_has_indexed_is_staged_by_every_dialect(api_as, store, send):
    (Path(store.archive_root) / "run1").mkdir()
    (Path(store.archive_root) / "run1" / "new.txt").write_bytes(b"hello")

    response = send(api_as(Role.DATA_USER), paths=["run1/new.txt"])

    assert response.status_code == ACCEPTED[send], response.content
    entry = File.objects.get(store=store, path="run1/new.txt")
    assert entry.size == 5
    assert list(Job.objects.get().items.values_list("path", flat=True)) == ["run1/new.txt"]


@pytest.mark.parametrize("send", [jobs_api, tasks_api])
def test_a_path_that_is_no_file_is_a_404_naming_it(api_as, store, send):
    response = send(api_as(Role.DATA_USER), paths=["run1/gone.txt"])
    body = assert_problem(response, 404, "run1/gone.txt")
    assert body["unknown_paths"] == ["run1/gone.txt"]
    assert not Job.objects.exists()


@pytest.mark.parametrize("send", [jobs_api, tasks_api])
def test_many_unknown_ids_are_listed_only_in_part_with_their_count(api_as, store, send):
    ids = [f"unknown-{n:05d}" for n in range(500)]

    response = send(api_as(Role.DATA_USER), ids=ids)

    body = assert_problem(response, 404, "500 of 500 ids", "and 480 more")
    assert body["unknown_ids"] == ids[:20]
    assert body["unknown_ids_count"] == 500
    assert len(response.content) < 5_000
    assert not Job.objects.exists()


@pytest.mark.parametrize("path", ["/run1/x.txt", "run1/../run1/x.txt"])
@pytest.mark.parametrize("send", [jobs_api, tasks_api])
def test_paths_not_written_relative_get_the_one_rule(api_as, store, send, path):
    response = send(api_as(Role.DATA_USER), paths=[path])
    body = assert_problem(response, 400, RULE, repr(path))
    assert body["field"] == "paths"
    assert "leave" not in body["detail"]
    assert not File.objects.exists()


@pytest.mark.parametrize("path", ["/run1/x.txt", "run1/../run1/x.txt"])
def test_durastore_says_the_same_rule_in_its_text(api_as, store, path):
    response = durastore(api_as(Role.DATA_USER), paths=[path])
    assert response.status_code == 400
    assert RULE in response.content.decode()
    assert not File.objects.exists()


def test_the_same_rule_guards_a_checksum_and_a_scan_prefix(api_as, store):
    client = api_as(Role.DATA_USER)
    checksum = client.post("/api/v1/tasks/checksum/", {"paths": ["/a.txt"]}, format="json")
    assert_problem(checksum, 400, RULE)
    scan = client.post(
        "/api/v1/jobs/", {"task": "scan", "parameters": {"prefix": "/run1"}}, format="json"
    )
    assert_problem(scan, 400, RULE)


def test_a_job_without_a_task_stages_as_documented(api_as, store):
    (Path(store.archive_root) / "a.txt").write_bytes(b"alpha")
    response = api_as(Role.DATA_USER).post("/api/v1/jobs/", {"paths": ["a.txt"]}, format="json")
    assert response.status_code == 202
    assert Job.objects.get().task == "stage"


def test_the_lifetime_is_echoed_as_it_was_written(api_as, store):
    (Path(store.archive_root) / "a.txt").write_bytes(b"alpha")
    client = api_as(Role.DATA_USER)
    created = client.post(
        "/api/v1/jobs/", {"paths": ["a.txt"], "lifetime": "P7D"}, format="json"
    ).json()
    detail = client.get(f"/api/v1/jobs/{created['jobId']}/").json()
    assert detail["lifetime"] == "P7D"
