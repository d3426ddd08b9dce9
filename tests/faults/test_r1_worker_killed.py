"""R1: the workers of one large job SIGKILLed again and again; the job still ends FINISHED with
every file byte-identical and no temporary left behind."""

import os
import signal
import time

import pytest

from tests.workers import wait_until

pytestmark = pytest.mark.integration

# 40 files of 256 KiB in sub-jobs of 8, about 0.3 s per file: long enough to be hit three times.
CONTENTS = {f"large/{n:02}.bin": os.urandom(256 * 1024 + n) for n in range(40)}
SUBJOBS_OF_8 = {"STAGING_SUBJOB_MAX_FILES": "8"}


def running_on(service, worker_name: str) -> bool:
    node = worker_name.replace("%h", os.uname().nodename)
    rows = service.query(
        "SELECT count(*) FROM staging_subjob WHERE status = 'RUNNING' AND worker LIKE %s",
        f"{node}:%",
    )
    return rows[0][0] > 0


def test_a_large_job_survives_its_pool_processes_killed_three_times(service):
    ids = service.add_files(CONTENTS)
    service.slow_down(300)
    web = service.start_web(**SUBJOBS_OF_8)
    worker = service.start_worker(concurrency=2)
    request_id = service.submit(web, ids)

    for round_ in range(3):
        done = service.items_finished(request_id)
        wait_until(
            lambda done=done: service.items_finished(request_id) >= done + 2,
            timeout=60,
            what=f"progress before kill {round_ + 1}",
        )
        os.kill(worker.child_pids()[0], signal.SIGKILL)
    killed_at = time.monotonic()

    statuses = service.wait_for_jobs([request_id], timeout=120)
    print(f"\npool processes killed: job ended {time.monotonic() - killed_at:.1f}s after the last")
    assert statuses == {request_id: "FINISHED"}, service.logs()[-3000:]
    service.assert_staged_intact(CONTENTS)


def test_a_large_job_survives_whole_workers_killed_twice_and_ends_within_60_s(service):
    ids = service.add_files(CONTENTS)
    service.slow_down(300)
    web = service.start_web(**SUBJOBS_OF_8)
    service.start_beat()
    workers = [service.start_worker(concurrency=1), service.start_worker(concurrency=1)]
    request_id = service.submit(web, ids)

    for round_ in range(2):
        victim = workers.pop(0)
        wait_until(
            lambda victim=victim: running_on(service, victim.name),
            timeout=60,
            what=f"a sub-job running on the worker to kill ({round_ + 1})",
        )
        os.killpg(victim.pid, signal.SIGKILL)
        victim.process.wait(timeout=10)
        workers.append(service.start_worker(concurrency=1))
    killed_at = time.monotonic()

    statuses = service.wait_for_jobs([request_id], timeout=60)
    print(f"\nwhole workers killed: job ended {time.monotonic() - killed_at:.1f}s after the last")
    assert statuses == {request_id: "FINISHED"}
    service.assert_staged_intact(CONTENTS)
