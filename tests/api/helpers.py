"""Assertions and builders shared by the API tests."""

from datetime import timedelta

from django.utils import timezone

from staging.models import Job, JobStatus, Pin
from tests.factories import ItemFactory, JobFactory, StoreFactory, SubJobFactory

PROBLEM = "application/problem+json"


def assert_problem(response, status: int, *words: str) -> dict:
    """The response is an RFC 9457 problem with this status whose detail holds every word."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail", "instance"} <= set(body)
    for word in words:
        assert word in body["detail"], body
    return body


def content_of(response) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content


def make_job(
    *,
    owner,
    store=None,
    status: str = JobStatus.NOT_STARTED,
    items: dict[str, str] | None = None,
    subjob_status: str | None = None,
    **fields,
) -> Job:
    """A job with one sub-job holding ``items`` ({path: item status}) and a live pin on each."""
    items = {"a.txt": JobStatus.NOT_STARTED} if items is None else items
    store = store or StoreFactory(slug="primary")
    job = JobFactory(
        owner=owner,
        store=store,
        status=status,
        files_total=len(items),
        bytes_total=100 * len(items),
        **fields,
    )
    subjob = SubJobFactory(
        job=job,
        sequence=1,
        status=subjob_status or status,
        files_total=len(items),
        bytes_total=100 * len(items),
    )
    for path, item_status in items.items():
        ItemFactory(job=job, subjob=subjob, path=path, status=item_status, size=100)
        Pin.objects.create(
            job=job, store=store, path=path, expires_at=timezone.now() + timedelta(days=1)
        )
    return job
