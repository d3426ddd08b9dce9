import pytest

from staging.models import Job
from staging.services.jobs import job_create_staging
from tests.factories import UserFactory


@pytest.fixture
def staged_job(store, archive_files):
    """Makes a job of the primary store over new archive files (two small ones unless told),
    not yet run."""

    def make(contents=None) -> Job:
        files = archive_files(contents or {"a.txt": b"alpha", "b.txt": b"beta"})
        return job_create_staging(owner=UserFactory(), store=store, files=files, source="api")

    return make
