"""Workers while the database blinks: they wait and resume, and no file fails for it."""

import os
import time

import pytest
import requests

from staging.roles import Role
from tests.workers import wait_until

pytestmark = pytest.mark.integration


def test_a_job_finishes_intact_when_the_database_stops_for_10_seconds_mid_job(service):
    contents = {f"run/f{n:02}.bin": os.urandom(128 * 1024 + n) for n in range(24)}
    ids = service.add_files(contents)
    service.slow_down(700)
    web = service.start_web()
    service.start_worker(concurrency=2)
    service.start_beat()
    request_id = service.submit(web, ids)
    wait_until(lambda: service.items_finished(request_id) >= 3, timeout=60, what="progress")

    service.postgres.stop()
    time.sleep(10)
    service.postgres.start()
    back_at = time.monotonic()

    statuses = service.wait_for_jobs([request_id], timeout=90)
    print(f"\njob ended {time.monotonic() - back_at:.1f}s after PostgreSQL came back")
    assert statuses == {request_id: "FINISHED"}, service.logs()[-5000:]
    assert service.query(
        "SELECT count(*) FROM staging_item WHERE status <> 'FINISHED' OR error <> ''"
    ) == [(0,)]
    service.assert_staged_intact(contents)
    status_url = f"{web.url}/dts/staging?id={request_id}"
    dts = service.headers(Role.SERVICE_USER)
    assert requests.get(status_url, headers=dts, timeout=30).json() == {"status": "ready"}
