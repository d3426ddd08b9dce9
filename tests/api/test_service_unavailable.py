"""503 + Retry-After while the broker does not answer (here: a port nobody listens on). The
database outage itself, with a real PostgreSQL stopped under gunicorn, is in tests/faults."""

import sqlite3

import pytest
from django.conf import settings
from django.test import override_settings
from django.urls import reverse

from staging.dependencies import broker_ensure_reachable, broker_redis_url
from staging.models import Job
from staging.roles import Role
from stagingsvc.middleware import PUBLISHING_ROUTES
from tests.api.helpers import assert_problem

pytestmark = pytest.mark.django_db

BROKER_CHECK = "stagingsvc.middleware.BrokerRequiredMiddleware"
NO_BROKER = override_settings(
    CELERY_BROKER_URL="redis://127.0.0.1:1/0",
    # Test settings drop the check when no Redis answers at all; here it is what is tested.
    MIDDLEWARE=[m for m in settings.MIDDLEWARE if m != BROKER_CHECK] + [BROKER_CHECK],
)


def test_every_publishing_route_names_a_real_route():
    for name in PUBLISHING_ROUTES:
        kwargs = {"job_id": "x"} if name == "job-retry" else {}
        kwargs |= {"task_name": "noop"} if name in {"durastore-task", "task-perform"} else {}
        assert reverse(name, kwargs=kwargs)


@NO_BROKER
@pytest.mark.parametrize(
    ("path", "body"),
    [("/dts/staging", {"ids": ["x"]}), ("/api/v1/jobs/", {"task": "stage", "ids": ["x"]})],
)
def test_a_submission_without_a_broker_is_503_with_retry_after_and_creates_no_job(
    api_as, archive_files, path, body
):
    (file,) = archive_files({"a.txt": b"alpha"})
    body["ids"] = [file.id]

    response = api_as(Role.SERVICE_USER).post(path, body, format="json")

    assert_problem(response, 503)
    assert int(response["Retry-After"]) > 0
    assert response.json()["unavailable"] == "broker"
    assert "broker" in response.json()["detail"]
    assert not Job.objects.exists()


@NO_BROKER
def test_reads_go_on_without_a_broker(api_as):
    response = api_as(Role.DATA_USER).get("/api/v1/jobs/")
    assert response.status_code == 200


@NO_BROKER
def test_the_broker_ping_raises_when_nothing_answers():
    with pytest.raises(Exception, match="the broker does not answer"):
        broker_ensure_reachable()


@pytest.mark.parametrize(
    ("broker_url", "pinged"),
    [
        ("redis+socket:///srv/var/redis.sock", "unix:///srv/var/redis.sock"),
        ("redis://broker:6379/0", "redis://broker:6379/0"),
        ("memory://", None),
    ],
)
def test_the_broker_is_pinged_where_celery_reaches_it(settings, broker_url, pinged):
    settings.CELERY_BROKER_URL = broker_url
    assert broker_redis_url() == pinged


def test_an_sqlite_syntax_error_is_a_bug_not_an_outage():
    # SQLite reports its own query errors as OperationalError; only a busy or unopenable file
    # means the database is away (503). A query it cannot parse must surface as a 500.
    from django.db import OperationalError

    from staging.dependencies import DATABASE, unreachable_dependency

    def wrapped(message: str) -> OperationalError:
        error = OperationalError(message)
        error.__cause__ = sqlite3.OperationalError(message)
        return error

    assert unreachable_dependency(wrapped('near "SELECT": syntax error')) is None
    assert unreachable_dependency(wrapped("database is locked")) == DATABASE
    assert unreachable_dependency(OperationalError("connection refused")) == DATABASE
