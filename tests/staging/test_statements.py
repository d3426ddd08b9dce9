"""staging.statements: a statement compiled once answers later calls with their own arguments,
exactly as the ORM would, and an argument that is not a parameter is refused, not guessed."""

import uuid

import pytest
from django.db.models.expressions import RawSQL

from staging.models import Job, JobStatus
from staging.statements import StatementCache
from tests.factories import JobFactory, UserFactory

pytestmark = pytest.mark.django_db


def own_job(job_uuid, owner_id):
    return Job.objects.filter(uuid=job_uuid, owner_id=owner_id).values("id", "status", "updated_at")


def test_later_calls_run_the_compiled_statement_with_their_own_arguments():
    cache = StatementCache()
    alice, bob = UserFactory(), UserFactory()
    jobs = [
        JobFactory(owner=alice, status=JobStatus.RUNNING),
        JobFactory(owner=bob, status=JobStatus.FAILED),
    ]
    for job in jobs:
        for owner in (alice, bob):
            expected = list(own_job(job.uuid, owner.pk))
            assert cache.rows("own", own_job, job_uuid=job.uuid, owner_id=owner.pk) == expected
    assert [
        row["id"] for row in cache.rows("own", own_job, job_uuid=jobs[1].uuid, owner_id=bob.pk)
    ] == [jobs[1].pk]
    assert cache.rows("own", own_job, job_uuid=uuid.uuid4(), owner_id=alice.pk) == []


def test_an_argument_written_into_the_sql_is_refused():
    def inlined(job_uuid, owner_id):
        return (
            Job.objects.filter(uuid=job_uuid)
            .annotate(
                mine=RawSQL(f"owner_id = {owner_id}", [])  # the case under test
            )
            .values("id", "mine")
        )

    with pytest.raises(ValueError, match="owner_id is not a parameter"):
        StatementCache().rows("inlined", inlined, job_uuid=uuid.uuid4(), owner_id=1)
