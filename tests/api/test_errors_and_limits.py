"""Every error is an RFC 9457 problem: malformed input, unknown routes, wrong methods and
formats, oversized bodies (413), throttled users (429), unexpected failures (500), and tokens."""

import json
import uuid
from datetime import timedelta

import pytest
import redis.connection
from django.test import override_settings
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from staging.models import Job, JobStatus
from staging.roles import Role
from staging.services.accounts import token_create
from stagingsvc.exceptions import server_error
from tests.api.helpers import PROBLEM, assert_problem, make_job

pytestmark = pytest.mark.django_db


def test_an_unknown_route_is_a_404_problem(client):
    assert_problem(client.get("/api/v1/nothing-here"), 404, "/api/v1/nothing-here")


def test_a_method_a_route_does_not_offer_is_a_405_problem_with_allow(api_as):
    response = api_as(Role.DATA_USER).delete("/api/v1/jobs/")
    assert_problem(response, 405, "DELETE")
    assert response["Allow"] == "GET, POST, HEAD, OPTIONS"


def test_a_body_that_is_not_json_is_400(api_as, store):
    response = api_as(Role.DATA_USER).post(
        "/api/v1/jobs/", "{not json", content_type="application/json"
    )
    assert_problem(response, 400, "JSON")


def test_a_body_of_another_media_type_is_415(api_as, store):
    response = api_as(Role.DATA_USER).post("/api/v1/jobs/", {"ids": "a"}, format="multipart")
    assert_problem(response, 415, "multipart")


@pytest.mark.parametrize("url", ["/api/v1/jobs/", "/dts/staging"])
def test_a_body_over_the_size_limit_is_413_and_creates_nothing(api_as, store, settings, url):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"ids": [f"id-{n:04}" for n in range(200)]})
    response = api_as(Role.DATA_USER).post(url, body, content_type="application/json")
    assert_problem(response, 413, "1000 bytes")
    assert not Job.objects.exists()


def test_a_user_over_the_rate_gets_429_with_retry_after_and_others_do_not(api_as, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"user": "3/minute", "submit": "3/minute"},
    }
    busy, other = api_as(Role.DATA_USER, "busy"), api_as(Role.DATA_USER, "other")
    job = make_job(owner=busy.user, status=JobStatus.RUNNING)
    url = f"/api/v1/task_status/{job.uuid}/peek"
    assert [busy.get(url).status_code for _ in range(3)] == [200, 200, 200]

    response = busy.get(url)

    assert_problem(response, 429, "throttled")
    assert 1 <= int(response["Retry-After"]) <= 60
    assert other.get("/api/v1/jobs/").status_code == 200


def test_submitting_has_its_own_smaller_budget(api_as, store, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"user": "100/minute", "submit": "2/minute"},
    }
    client = api_as(Role.DATA_USER)
    codes = [
        client.post("/api/v1/jobs/", {"paths": ["gone"]}, format="json").status_code
        for _ in range(3)
    ]
    assert codes == [404, 404, 429]
    assert client.get("/api/v1/jobs/").status_code == 200


def test_an_unexpected_error_is_a_500_problem_that_reveals_nothing(api_as, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("password=hunter2 at db.internal:5432")

    monkeypatch.setattr("staging.api.jobs.job_get", broken)
    client = api_as(Role.DATA_USER)
    client.raise_request_exception = False

    response = client.get(f"/api/v1/jobs/{uuid.uuid4()}/")

    body = assert_problem(response, 500, "could not complete")
    assert "hunter2" not in response.content.decode()
    assert "Traceback" not in response.content.decode()
    assert body["title"] == "Internal Server Error"


def test_the_500_page_outside_the_api_is_a_problem_too(rf):
    response = server_error(rf.get("/admin/whatever"))
    assert response.status_code == 500
    assert response["Content-Type"] == PROBLEM
    assert json.loads(response.content)["detail"].startswith("The server could not complete")


def test_an_expired_token_is_refused_and_deleted(store):
    token = token_create(username="ann", role=Role.DATA_USER, ttl=timedelta(hours=1))
    AuthToken.objects.update(expiry=timezone.now() - timedelta(minutes=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    assert_problem(client.get("/api/v1/jobs/"), 401)
    assert not AuthToken.objects.exists()


def test_a_valid_token_works_beside_an_expired_one_of_the_same_user(store):
    old = token_create(username="ann", role=Role.DATA_USER, ttl=timedelta(hours=1))
    AuthToken.objects.update(expiry=timezone.now() - timedelta(minutes=1))
    new = token_create(username="ann", role=Role.DATA_USER)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {new}")
    assert client.get("/api/v1/jobs/").status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {old}")
    assert client.get("/api/v1/jobs/").status_code == 401


def test_on_a_redis_cache_a_request_is_counted_in_one_round_trip_and_the_limit_holds(
    api_as, settings, broker, monkeypatch
):
    sends = []
    send = redis.connection.AbstractConnection.send_packed_command

    def counted(connection, *args, **kwargs):
        sends.append(args)
        return send(connection, *args, **kwargs)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"user": "3/minute", "submit": "3/minute"},
    }
    shared = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": settings.TEST_REDIS_URL,
        # Under the test run's broker prefix: the broker fixture deletes these keys after.
        "KEY_PREFIX": f"{settings.BROKER_KEY_PREFIX}cache",
    }
    busy = api_as(Role.DATA_USER, "busy")
    url = f"/api/v1/task_status/{make_job(owner=busy.user, status=JobStatus.RUNNING).uuid}/peek"
    with override_settings(CACHES={"default": shared}):
        codes = [busy.get(url).status_code]  # opens the connection to Redis
        for _ in range(3):
            sends.clear()
            codes.append(busy.get(url).status_code)
            assert len(sends) == 1  # INCR and EXPIRE in one pipeline
        (key,) = broker.scan_iter(match=f"{settings.BROKER_KEY_PREFIX}cache:*throttle:user:*")
        ttl = broker.ttl(key)

    assert codes == [200, 200, 200, 429]
    assert 0 < ttl <= 61  # the window's counter goes with the window
