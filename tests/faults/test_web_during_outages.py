"""The web tier while its database or broker is away: 503 with Retry-After and a problem body
on every endpoint that needs what is missing (never a 500), and 200s again once it is back,
without restarting gunicorn."""

import time

import pytest
import requests

from staging.roles import Role
from tests.workers import wait_until

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


def assert_unavailable(response: requests.Response, *, naming: str) -> None:
    assert response.status_code == 503, (response.request.url, response.text[:500])
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["Content-Type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == 503
    assert body["title"] == "Service Unavailable"
    assert naming in body["detail"]


def dts_submit(web, headers, ids) -> requests.Response:
    return requests.post(f"{web.url}/dts/staging", json={"ids": ids}, headers=headers, timeout=30)


def api_submit(web, headers, ids) -> requests.Response:
    return requests.post(
        f"{web.url}/api/v1/jobs/", json={"task": "stage", "ids": ids}, headers=headers, timeout=30
    )


def test_every_endpoint_answers_503_while_the_database_is_away_and_200_once_it_is_back(service):
    ids = service.add_files({"a.txt": b"alpha\n"})
    dts = service.headers(Role.SERVICE_USER)
    user = service.headers(Role.DATA_USER)
    web = service.start_web()
    request_id = dts_submit(web, dts, ids).json()["request_id"]
    status_url = f"{web.url}/dts/staging?id={request_id}"
    assert requests.get(status_url, headers=dts, timeout=10).status_code == 200

    service.postgres.stop()
    # Several rounds, so both gunicorn workers and their kept connections meet the outage.
    for _ in range(4):
        assert_unavailable(requests.get(status_url, headers=dts, timeout=30), naming="database")
        assert_unavailable(api_submit(web, user, ids), naming="database")
    assert_unavailable(
        requests.get(f"{web.url}/api/v1/jobs/{request_id}/", headers=user, timeout=30),
        naming="database",
    )
    # The admin and its login page read the session and the user from the database.
    assert_unavailable(
        requests.get(f"{web.url}/admin/", cookies={"sessionid": "x" * 32}, timeout=30),
        naming="database",
    )
    assert_unavailable(requests.get(f"{web.url}/metrics", timeout=30), naming="database")
    ready = requests.get(f"{web.url}/readyz", timeout=30)
    assert ready.status_code == 503
    assert "Database" in ready.text
    assert requests.get(f"{web.url}/healthz", timeout=30).status_code == 200

    service.postgres.start()
    wait_until(
        lambda: requests.get(status_url, headers=dts, timeout=30).status_code == 200,
        timeout=30,
        what="the status poll to answer 200 again",
    )
    for _ in range(4):
        assert requests.get(status_url, headers=dts, timeout=30).json() == {"status": "staging"}
        assert api_submit(web, user, ids).status_code == 202
    assert requests.get(f"{web.url}/readyz", timeout=30).status_code == 200
    assert requests.get(f"{web.url}/metrics", timeout=30).status_code == 200
    assert "Internal Server Error" not in web.log_path.read_text(errors="replace")


def test_a_submission_while_the_broker_is_away_is_refused_with_503_and_creates_nothing(service):
    ids = service.add_files({"a.txt": b"alpha\n", "b.txt": b"beta\n"})
    dts = service.headers(Role.SERVICE_USER)
    user = service.headers(Role.DATA_USER)
    web = service.start_web()
    first = dts_submit(web, dts, ids[:1]).json()["request_id"]
    status_url = f"{web.url}/dts/staging?id={first}"

    service.redis.kill()
    started = time.monotonic()
    assert_unavailable(dts_submit(web, dts, ids), naming="broker")
    assert_unavailable(api_submit(web, user, ids), naming="broker")
    assert time.monotonic() - started < 20, "a refusal must not wait out long retries"
    assert service.query("SELECT count(*) FROM staging_job") == [(1,)]
    # Reading needs only the database: polls go on answering.
    assert requests.get(status_url, headers=dts, timeout=30).json() == {"status": "staging"}
    ready = requests.get(f"{web.url}/readyz", timeout=30)
    assert ready.status_code == 503
    assert "Redis" in ready.text

    service.redis.start()
    service.start_worker()
    retried = dts_submit(web, dts, ids)
    assert retried.status_code == 201, retried.text
    second = retried.json()["request_id"]
    assert service.query("SELECT count(*) FROM staging_job") == [(2,)]
    statuses = service.wait_for_jobs([second], timeout=60)
    assert statuses == {second: "FINISHED"}
    service.assert_staged_intact(["a.txt", "b.txt"])
