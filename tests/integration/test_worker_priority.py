"""A worker that takes staging work copies at a lower CPU and I/O priority than the web on the
same machine (STAGING_WORKER_NICE, STAGING_WORKER_IONICE); a worker of the control queue alone
keeps the normal priority. Real `celery worker` processes; the priorities are read from the
kernel (/proc/<pid>/stat and ioprio_get) for their pool processes."""

import os
from pathlib import Path

import pytest

from staging.models import JobStatus
from staging.services.jobs import job_create_staging
from stagingsvc.process_priority import IONICE_CLASSES, IoPriority, io_priority_of, parse_ionice
from tests.factories import UserFactory
from tests.workers import wait_for_job, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def niceness_of(pid: int) -> int:
    # The command name (field 2) may hold spaces; the fields after its ")" are fixed, and
    # nice is the 19th field of the line.
    after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(after_name[16])


def pool_priorities(worker, concurrency: int) -> list[tuple[int, IoPriority | None]]:
    """(niceness, I/O priority) of each pool process, once all have started."""
    wait_until(lambda: len(worker.child_pids()) == concurrency, timeout=30, what="pool processes")
    return [(niceness_of(pid), io_priority_of(pid)) for pid in worker.child_pids()]


def test_a_staging_worker_copies_at_the_lower_priority_it_is_configured_with(
    store, archive_files, start_worker
):
    worker = start_worker(
        concurrency=2, queues="staging", STAGING_WORKER_NICE="7", STAGING_WORKER_IONICE="idle"
    )
    # A pool process lowers its priority as it starts, right after the worker's "ready.".
    wait_until(
        lambda: all(nice == 7 for nice, _ in pool_priorities(worker, 2)),
        timeout=30,
        what="the pool processes at nice 7",
    )
    assert pool_priorities(worker, 2) == [(7, IoPriority(IONICE_CLASSES["idle"], 0))] * 2
    # ... and still does the work (dispatched by a worker of the control queue).
    start_worker(concurrency=1, queues="control")
    files = archive_files({"a.bin": b"a" * 4096, "b.bin": b"b" * 10})
    job = job_create_staging(owner=UserFactory(), store=store, files=files, source="api")
    assert wait_for_job(job).status == JobStatus.FINISHED
    assert (Path(store.staging_root) / "a.bin").read_bytes() == b"a" * 4096


def test_by_default_a_staging_worker_runs_at_nice_10_and_the_last_best_effort_level(
    start_worker,
):
    worker = start_worker(concurrency=2, queues="staging,control")
    wait_until(
        lambda: all(nice == 10 for nice, _ in pool_priorities(worker, 2)),
        timeout=30,
        what="the pool processes at nice 10",
    )
    assert pool_priorities(worker, 2) == [(10, IoPriority(IONICE_CLASSES["best-effort"], 7))] * 2


def test_a_control_worker_keeps_the_normal_priority(start_worker):
    worker = start_worker(concurrency=2, queues="control")
    ours = os.getpriority(os.PRIO_PROCESS, 0), io_priority_of(os.getpid())
    assert pool_priorities(worker, 2) == [ours] * 2


@pytest.mark.parametrize("text", ["best-effort", "best-effort:8", "idle:3", "realtime:0", "7"])
def test_an_io_priority_that_is_not_one_is_refused_with_what_is_accepted(text):
    with pytest.raises(ValueError, match=r"best-effort:N .* idle, or none"):
        parse_ionice(text)
