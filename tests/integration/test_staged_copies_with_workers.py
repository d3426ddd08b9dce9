"""What `ready` promises about a staged copy, kept by real `celery worker` processes on Redis and
the test database: only regular files are read, and a copy other jobs rely on is never pulled
from under them."""

import hashlib
import os
from pathlib import Path

import pytest

from staging.models import File, JobStatus, Pin
from tests.integration.test_tasks_with_workers import TaskClient
from tests.workers import wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def client(live_server) -> TaskClient:
    return TaskClient(live_server.url)


def test_a_fifo_in_place_of_a_catalogued_file_fails_that_file_and_the_worker_goes_on(
    client, store, archive_files, start_worker
):
    pipe, following = archive_files({"pipe": b"was a file", "next.txt": b"next"})
    fifo = Path(store.archive_root) / "pipe"
    fifo.unlink()
    os.mkfifo(fifo)
    start_worker(concurrency=1)

    # By catalogue id: a request by path looks at the archive as it is now and refuses the FIFO
    # before any worker sees it; an id catalogued while it was a file reaches the worker.
    job = wait_for_job(client.api("stage", {"ids": [pipe.id, following.id]}), timeout=60)
    later = wait_for_job(client.api("stage", {"ids": [following.id]}), timeout=60)

    item = job.items.get(path="pipe")
    assert (job.status, item.status, item.attempts) == (
        JobStatus.PARTIALLY_FAILED,
        JobStatus.FAILED,
        1,
    )
    assert item.error.endswith("is a FIFO, not a regular file")
    assert later.status == JobStatus.FINISHED
    assert (Path(store.staging_root) / "next.txt").read_bytes() == b"next"
    assert not (Path(store.staging_root) / "pipe").exists()


def test_a_verify_mismatch_keeps_a_copy_another_ready_job_pins_on_a_worker(
    client, store, archive_files, start_worker
):
    (file,) = archive_files({"shared.bin": b"correct content"})
    start_worker(concurrency=1)
    ready = wait_for_job(client.api("stage", {"paths": ["shared.bin"]}))
    assert ready.status == JobStatus.FINISHED
    staged = Path(store.staging_root) / "shared.bin"
    archived = (Path(store.archive_root) / "shared.bin").stat()
    staged.write_bytes(b"corrupt content")  # bit rot: same size, same mtime, wrong bytes
    os.utime(staged, ns=(archived.st_atime_ns, archived.st_mtime_ns))
    File.objects.filter(pk=file.pk).update(sha256=hashlib.sha256(b"correct content").hexdigest())

    checked = wait_for_job(client.api("stage", {"paths": ["shared.bin"], "verify": True}))

    item = checked.items.get()
    assert (checked.status, item.attempts) == (JobStatus.FAILED, 1)
    assert "the copy was kept, as other jobs pin it, and flagged" in item.error
    assert staged.read_bytes() == b"corrupt content"
    assert Pin.objects.get(job=ready).mismatch_found_at is not None

    again = wait_for_job(client.api("stage", {"paths": ["shared.bin"], "verify": True}))
    assert again.status == JobStatus.FINISHED
    assert staged.read_bytes() == b"correct content"
    assert not Pin.objects.exclude(mismatch_found_at=None).exists()
