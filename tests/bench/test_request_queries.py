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


@pytest.mark.django_db(transaction=True)
def test_an_admin_page_s_queries_are_counted_and_timed_outside_a_transaction():
    from django.contrib.auth import get_user_model

    from bench.admin_queries import page_queries
    from bench.prepare import BENCH_STAFF

    get_user_model().objects.create_superuser(BENCH_STAFF, "", "x")
    JobFactory(status=JobStatus.RUNNING)
    page = page_queries("/admin/staging/job/")
    assert page["count"] >= 2  # at least the session's user and the page of jobs
    assert page["sql_ms"] > 0
    assert any("staging_job" in query["sql"] for query in page["slowest"])
