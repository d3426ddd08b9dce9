"""Shared steps of the WLCG tape API tests."""

from pathlib import Path

from staging.models import Job, Store

API = "/tape/api/v1"
PROBLEM = "application/problem+json"


def stage(client, *paths: str, slash: str = "", **file_fields):
    """POST a stage request for ``paths``; extra keyword fields go on every file."""
    files = [{"path": path, **file_fields} for path in paths]
    return client.post(f"{API}/stage{slash}", {"files": files}, format="json")


def staged_job(client, *paths: str, **file_fields) -> Job:
    response = stage(client, *paths, **file_fields)
    assert response.status_code == 201, response.content
    return Job.objects.get(uuid=response.json()["requestId"])


def assert_problem(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    for word in words:
        assert word in body["detail"], body
    return body


def second_store(tmp_path: Path, slug: str = "cold") -> Store:
    archive, staging = tmp_path / f"{slug}-archive", tmp_path / f"{slug}-staging"
    archive.mkdir()
    staging.mkdir()
    return Store.objects.create(slug=slug, archive_root=str(archive), staging_root=str(staging))
