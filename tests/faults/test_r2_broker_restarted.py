"""R2: Redis restarted without persistence while 20 DTS jobs are in flight: the queued messages
are gone, the database still knows what must run, and every job ends within 60 s of Redis's
return."""

import os
import time

import pytest

from tests.workers import wait_until

pytestmark = pytest.mark.integration

JOBS = 20


def test_every_job_ends_within_60_s_of_an_emptied_broker_coming_back(service):
    contents = {f"job{j:02}/f{n}.bin": os.urandom(32768 + n) for j in range(JOBS) for n in range(3)}
    ids = service.add_files(contents)
    service.slow_down(300)
    web = service.start_web()
    service.start_worker(concurrency=2)
    service.start_beat()
    request_ids = [service.submit(web, ids[j * 3 : j * 3 + 3]) for j in range(JOBS)]
    wait_until(lambda: service.items_finished() >= 4, timeout=60, what="progress")

    service.redis.kill()
    time.sleep(3)
    service.redis.start()
    back_at = time.monotonic()

    statuses = service.wait_for_jobs(request_ids, timeout=60)
    print(f"\nevery job ended {time.monotonic() - back_at:.1f}s after Redis came back empty")
    assert set(statuses.values()) == {"FINISHED"}, statuses
    service.assert_staged_intact(contents)
