"""The dispatcher across a broker restarted empty and a database restarted, mid-run: a store
capped at two sub-jobs never runs more (sampled over a plain database connection throughout),
and every job ends with its files intact. Four worker processes, so the cap is what holds."""

import os
import threading
import time

import psycopg
import pytest

from tests.faults.conftest import STORE
from tests.workers import WorkerProcess, wait_until

pytestmark = pytest.mark.integration

JOBS = 3
FILES_PER_JOB = 8
FAST = {
    "DISPATCH_INTERVAL_SECONDS": "1",
    "RECONCILER_INTERVAL_SECONDS": "1",
    "REAPER_INTERVAL_SECONDS": "1",
    "STAGING_LEASE_SECONDS": "6",
    "STAGING_HEARTBEAT_SECONDS": "2",
}


class RunningSampler:
    """A thread that counts RUNNING sub-jobs every 50 ms; a sample the database cannot answer
    (it is stopped) is skipped."""

    def __init__(self, url: str):
        self.url = url
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        sql = "SELECT count(*) FROM staging_subjob WHERE status = 'RUNNING'"
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, connect_timeout=2) as connection:
                    while not self._stop.is_set():
                        self.samples.append(connection.execute(sql).fetchone()[0])
                        time.sleep(0.05)
            except psycopg.Error:
                time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(timeout=30)


def start_capped(service):
    """Web, four worker processes and beat, a store capped at two sub-jobs, and JOBS requests
    of one-file sub-jobs; returns the request ids and the files."""
    contents = {
        f"job{j}/f{n}.bin": os.urandom(32768 + n) for j in range(JOBS) for n in range(FILES_PER_JOB)
    }
    ids = service.add_files(contents)
    service.slow_down(400)
    service.manage("storelimit", STORE, "--max-active", "2")
    web = service.start_web(STAGING_SUBJOB_MAX_FILES="1")
    for _ in range(2):
        service.start_worker(concurrency=2, **FAST)
    service.start_beat(**FAST)
    request_ids = [
        service.submit(web, ids[j * FILES_PER_JOB : (j + 1) * FILES_PER_JOB]) for j in range(JOBS)
    ]
    return request_ids, contents


def restart_exited_workers(service) -> int:
    """What the supervisor does (systemd's Restart=on-failure, Kubernetes): a worker whose
    main process exited is started again. Celery's consumer can die with "Unrecoverable
    error" when a task's acknowledgement meets the lost broker connection (kombu), whatever
    the task did; returns how many were restarted."""
    exited = [
        p
        for p in service.processes
        if isinstance(p, WorkerProcess) and p.process.poll() is not None
    ]
    for worker in exited:
        service.processes.remove(worker)
        service.start_worker(concurrency=2, **FAST)
    return len(exited)


def test_a_store_cap_holds_and_every_job_ends_across_an_emptied_broker(service):
    with RunningSampler(service.postgres.url()) as sampler:
        request_ids, contents = start_capped(service)
        wait_until(lambda: service.items_finished() >= 3, timeout=60, what="progress")

        service.redis.kill()
        time.sleep(3)
        service.redis.start()
        time.sleep(2)
        print(f"\nworkers restarted by the supervisor: {restart_exited_workers(service)}")

        statuses = service.wait_for_jobs(request_ids, timeout=120)
    assert set(statuses.values()) == {"FINISHED"}, statuses
    assert max(sampler.samples) == 2, sampler.samples
    service.assert_staged_intact(contents)


def test_a_store_cap_holds_and_every_job_ends_across_a_database_restart(service):
    with RunningSampler(service.postgres.url()) as sampler:
        request_ids, contents = start_capped(service)
        wait_until(lambda: service.items_finished() >= 3, timeout=60, what="progress")

        service.postgres.stop()
        time.sleep(8)
        service.postgres.start()

        statuses = service.wait_for_jobs(request_ids, timeout=180)
    assert set(statuses.values()) == {"FINISHED"}, statuses
    assert max(sampler.samples) == 2, sampler.samples
    service.assert_staged_intact(contents)
