"""A cancel through API v1 records who asked for it and when (the admin shows it)."""

import pytest

from staging.models import JobStatus
from staging.roles import Role
from tests.factories import JobFactory, SubJobFactory

pytestmark = pytest.mark.django_db


def test_a_cancel_through_the_api_records_who_asked(api_as):
    client = api_as(Role.DATA_USER)
    job = JobFactory(owner=client.user, status=JobStatus.NOT_STARTED)
    SubJobFactory(job=job, sequence=1)
    assert client.post(f"/api/v1/jobs/{job.uuid}/cancel").status_code in (200, 202)
    job.refresh_from_db()
    assert (job.cancelled_by, job.cancelled_at is not None) == (client.user, True)
