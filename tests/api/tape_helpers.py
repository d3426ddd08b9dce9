"""Shared steps of the WLCG tape API tests."""

from pathlib import Path

from staging.models import Job, Store
from tests.factories import store_with_roots

API = "/tape/api/v1"


def stage(client, *paths: str, slash: str = "", **file_fields):
    """POST a stage request for ``paths``; extra keyword fields go on every file."""
    files = [{"path": path, **file_fields} for path in paths]
    return client.post(f"{API}/stage{slash}", {"files": files}, format="json")


def staged_job(client, *paths: str, **file_fields) -> Job:
    response = stage(client, *paths, **file_fields)
    assert response.status_code == 201, response.content
    return Job.objects.get(uuid=response.json()["requestId"])


def second_store(tmp_path: Path, slug: str = "cold") -> Store:
    return store_with_roots(tmp_path, slug=slug, prefix=f"{slug}-")
