"""bench.context.request_queries counts the statements of one request run in-process, also
when the request runs on a connection lent to it (outside a transaction, as in the bench run's
own process) rather than on the caller's."""

import pytest

from bench.context import request_queries
from staging.models import JobStatus
from staging.roles import Role
from staging.services.accounts import token_create
from tests.factories import JobFactory, UserFactory


@pytest.mark.django_db(transaction=True)
def test_a_status_poll_is_counted_outside_a_transaction():
    token = token_create(username="dts", role=Role.SERVICE_USER)
    job = JobFactory(owner=UserFactory(username="dts"), status=JobStatus.RUNNING)
    header = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    cold = request_queries("GET", f"/dts/staging?id={job.uuid}", **header)
    warm = request_queries("GET", f"/dts/staging?id={job.uuid}", **header)
    # The first poll reads the token, its user and roles, and the job; the next only the job.
    assert cold > warm == 1
