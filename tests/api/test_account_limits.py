"""Rates and limits per account: per role and per user (AccountLimits rows, as the admin sets
them), defaults that let a service account poll, the submit budget on every route that creates
a job, limits of work in flight answered 429 + Retry-After + the limit's name, and anonymous
requests throttled per address."""

import pytest
from django.contrib.auth.models import Group

from staging.models import AccountLimits, Job
from staging.roles import Role
from staging.selectors_accounts import account_limits_changed
from tests.api.helpers import assert_problem

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(settings):
    def set_rates(**rates: str) -> None:
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}

    return set_rates


def limits(**fields) -> AccountLimits:
    row = AccountLimits.objects.create(**fields)
    account_limits_changed()
    return row


def assert_throttled(response) -> None:
    assert response.status_code == 429, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert int(response["Retry-After"]) >= 1


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/dts/staging", {"ids": ["unknown"]}),
        ("/tape/api/v1/stage", {"files": [{"path": "/missing.txt"}]}),
    ],
)
def test_every_route_that_creates_a_job_counts_against_the_submit_budget(
    api_as, store, rates, url, body
):
    rates(user="100/minute", submit="2/minute")
    client = api_as(Role.DATA_USER)

    answers = [client.post(url, body, format="json") for _ in range(3)]

    assert [a.status_code for a in answers[:2]] != [429, 429]
    assert_throttled(answers[2])


def test_a_service_account_polls_far_above_the_per_user_default(api_as, store, rates):
    rates(user="3/minute", submit="3/minute")
    dts = api_as(Role.SERVICE_USER, "dts")
    person = api_as(Role.DATA_USER, "person")

    polls = [dts.get("/dts/staging?id=00000000-0000-0000-0000-000000000000") for _ in range(10)]

    assert [p.status_code for p in polls] == [404] * 10
    assert [person.get("/api/v1/jobs/").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_a_users_own_rate_overrides_its_roles(api_as, rates):
    rates(user="100/minute", submit="100/minute")
    busy, other = api_as(Role.DATA_USER, "busy"), api_as(Role.DATA_USER, "other")
    limits(user=busy.user, request_rate="2/minute")

    answers = [busy.get("/api/v1/jobs/") for _ in range(3)]

    assert [a.status_code for a in answers[:2]] == [200, 200]
    assert_throttled(answers[2])
    assert other.get("/api/v1/jobs/").status_code == 200


def test_a_role_rate_set_in_the_admin_applies_to_everyone_holding_it(api_as, rates):
    rates(user="3/minute", submit="3/minute")
    limits(role=Group.objects.get(name=Role.DATA_USER), request_rate="100/minute")
    client = api_as(Role.DATA_USER)

    assert [client.get("/api/v1/jobs/").status_code for _ in range(6)] == [200] * 6


def test_a_user_over_its_active_jobs_gets_429_naming_the_limit(api_as, archive_files):
    (a, b) = archive_files({"a.txt": b"a", "b.txt": b"b"})
    client = api_as(Role.DATA_USER)
    limits(user=client.user, max_active_jobs=1)

    first = client.post("/api/v1/jobs/", {"ids": [a.id]}, format="json")
    second = client.post("/api/v1/jobs/", {"ids": [b.id]}, format="json")
    by_dts = client.post("/dts/staging", {"ids": [b.id]}, format="json")

    assert first.status_code == 202
    for refused in (second, by_dts):
        body = assert_problem(refused, 429, "max_active_jobs", "limit of 1")
        assert body["limit"] == "max_active_jobs"
        assert int(refused["Retry-After"]) >= 1
    assert Job.objects.count() == 1


def test_a_user_over_its_active_files_or_bytes_gets_429(api_as, archive_files):
    (a, b) = archive_files({"a.txt": b"a" * 10, "b.txt": b"b" * 10})
    client = api_as(Role.DATA_USER)
    limits(user=client.user, max_active_bytes=15)

    first = client.post("/api/v1/tasks/checksum/", {"ids": [a.id]}, format="json")
    second = client.post("/api/v1/tasks/checksum/", {"ids": [b.id]}, format="json")

    assert first.status_code == 202
    assert_problem(second, 429, "max_active_bytes")


def test_concurrent_scans_are_limited_per_user(api_as, store):
    client = api_as(Role.DATA_USER)
    limits(role=Group.objects.get(name=Role.DATA_USER), max_concurrent_scans=1)

    first = client.post("/api/v1/tasks/scan/", {}, format="json")
    second = client.post("/api/v1/tasks/scan/", {}, format="json")

    assert first.status_code == 202
    assert_problem(second, 429, "max_concurrent_scans")


def test_anonymous_requests_are_throttled_per_address(client, rates):
    rates(user="100/minute", submit="100/minute", anon="2/minute")

    answers = [client.get("/.well-known/wlcg-tape-rest-api") for _ in range(3)]

    assert [a.status_code for a in answers[:2]] == [200, 200]
    assert_throttled(answers[2])


def test_counting_a_users_work_in_flight_reads_a_small_partial_index(api_as):
    from django.db import connection

    from staging.models import ACTIVE_STATUSES

    if connection.vendor != "postgresql":
        pytest.skip("the plan is PostgreSQL's; CI runs on PostgreSQL")
    client = api_as(Role.DATA_USER)
    queryset = Job.objects.filter(owner=client.user, status__in=ACTIVE_STATUSES).order_by()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql, params = queryset.query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "job_owner_active" in plan, plan
