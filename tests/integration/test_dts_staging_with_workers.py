"""DTS staging end to end over real HTTP, with real `celery worker` processes on Redis and the
test database (PostgreSQL whenever it answers; always in CI)."""

import os
from pathlib import Path

import pytest
import requests

from staging.models import File, Item, Job, JobStatus
from staging.services.execution import subjob_run
from tests.integration.dts_client import dts_headers, dts_stage, poll_until_not_staging
from tests.workers import wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_dts_request_goes_from_staging_to_ready_with_the_bytes_in_place(
    live_server, store, archive_files, start_worker, broker
):
    contents = {
        "big/genome.fasta": os.urandom(5 * 1024 * 1024 + 17),
        "small/a.txt": b"alpha\n",
        "small/empty": b"",
    }
    files = archive_files(contents)
    headers = dts_headers()

    request_id, status_url = dts_stage(live_server.url, [f.id for f in files], headers)
    # No worker runs yet: the request is queued in Redis and the DTS is told to wait.
    assert requests.get(status_url, headers=headers, timeout=10).json() == {"status": "staging"}

    worker = start_worker(concurrency=2)
    assert poll_until_not_staging(status_url, headers) == "ready", worker.log()

    staging_root = Path(store.staging_root)
    for relative, data in contents.items():
        assert (staging_root / relative).read_bytes() == data
    leftovers = [p for p in staging_root.rglob("*") if p.is_file() and p.name.endswith(".part")]
    assert leftovers == []
    job = Job.objects.get(uuid=request_id)
    assert (job.files_done, job.bytes_done) == (3, sum(len(d) for d in contents.values()))
    assert job.started_at <= job.finished_at


def test_a_missing_source_fails_the_request_with_the_reason_on_the_item(
    live_server, store, archive_files, start_worker, broker
):
    present, vanished = archive_files({"keep.txt": b"keep", "gone.txt": b"gone"})
    (Path(store.archive_root) / "gone.txt").unlink()
    headers = dts_headers()
    start_worker(concurrency=1)

    request_id, status_url = dts_stage(live_server.url, [present.id, vanished.id], headers)
    assert poll_until_not_staging(status_url, headers) == "failed"

    job = Job.objects.get(uuid=request_id)
    assert job.status == JobStatus.PARTIALLY_FAILED
    failed = Item.objects.get(job=job, path="gone.txt")
    assert failed.status == JobStatus.FAILED
    assert "not found" in failed.error
    assert (Path(store.staging_root) / "keep.txt").read_bytes() == b"keep"
    assert not (Path(store.staging_root) / "gone.txt").exists()


def test_the_worker_registers_every_task_module(start_worker):
    worker = start_worker(concurrency=1)
    log = worker.log()
    for task in (
        "tasks.staging.run_subjob",
        "tasks.staging.stage_subjob",  # its name before the rename, for messages of an upgrade
        "tasks.maintenance.reap_expired_leases",
        "tasks.maintenance.reconcile_lost_subjobs",
        "tasks.maintenance.sweep_unpinned_copies",
        "tasks.maintenance.purge_old_jobs",
    ):
        assert task in log


@pytest.mark.parametrize("poisoned_path", ["../outside.txt", "/etc/hostname", "escape/secret.txt"])
def test_catalogue_paths_that_leave_the_roots_fail_and_write_nothing_outside(
    tmp_path, store, archive_files, client_for, poisoned_path
):
    """Even a corrupted catalogue entry (or a symlink planted in the staging area) cannot make
    a worker read or write outside the store's roots."""
    (tmp_path / "outside.txt").write_text("outside")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret.txt").write_text("secret")
    (Path(store.archive_root) / "escape").symlink_to(tmp_path / "elsewhere")
    (Path(store.staging_root) / "escape").symlink_to(tmp_path / "elsewhere")
    (ok,) = archive_files({"ok.txt": b"ok"})
    File.objects.filter(pk=ok.pk).update(path=poisoned_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    response = client_for().post("/dts/staging", {"ids": [ok.id]}, format="json")
    job = Job.objects.get(uuid=response.json()["request_id"])
    subjob = job.subjobs.get()
    subjob_run(subjob_id=subjob.pk, worker="test", task_id="t")

    job = wait_for_job(job, timeout=5)
    assert job.status == JobStatus.FAILED
    assert poisoned_path in job.items.get().error
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (tmp_path / "elsewhere" / "secret.txt").read_text() == "secret"
