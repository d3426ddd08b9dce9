"""Metrics and structured logs of a real `celery worker` on Redis and the test database: the
job counters at /metrics move as a request is staged, the worker's own counters (multiprocess
mode, served by its main process) count what it staged and repaired, and with LOG_FORMAT=json
every line a task writes carries its job, sub-job and worker host."""

import json
import os
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from staging.models import Job, JobStatus, Pin
from staging.roles import Role
from staging.services.dispatch import DISPATCH_TASK, subjobs_dispatch
from stagingsvc.celery import app as celery_app
from tests.factories import JobFactory
from tests.integration.dts_client import dts_headers, dts_stage
from tests.integration.stack import free_port
from tests.workers import wait_for_job, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def repairs_counted(worker_url: str, task: str, action: str) -> float:
    """Run the periodic task ``tasks.maintenance.<task>`` on the control queue and wait until
    the worker's metrics count its ``action``; that count."""
    celery_app.send_task(f"tasks.maintenance.{task}", queue="control")
    counted = ("stagingsvc_recovery_actions_total", (("action", action), ("task", task)))
    wait_until(lambda: counted in scrape(worker_url), timeout=30, what=f"the {task} count")
    return scrape(worker_url)[counted]


def jobs(found: dict, status: str) -> float:
    return found[("stagingsvc_jobs", (("status", status),))]


def start_metrics_worker(start_worker, metrics_dir: Path, *, concurrency: int = 2, **options):
    """A worker serving its metrics on a free loopback port; returns (worker, metrics URL)."""
    port = free_port()
    worker = start_worker(
        concurrency=concurrency,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        WORKER_METRICS_PORT=str(port),
        WORKER_METRICS_ADDRESS="127.0.0.1",
        **options,
    )
    return worker, f"http://127.0.0.1:{port}/metrics"


@pytest.fixture
def metrics_worker(start_worker, tmp_path):
    return start_metrics_worker(start_worker, tmp_path / "prometheus")


def test_the_job_counters_move_while_a_worker_stages_a_request(
    live_server, store, archive_files, start_worker, tmp_path
):
    contents = {"a.txt": b"alpha", "b/c.bin": os.urandom(300_000), "empty": b""}
    files = archive_files(contents)
    request_id, _ = dts_stage(live_server.url, [f.id for f in files], dts_headers())
    subjobs_dispatch()  # no worker yet: the dispatch pass its wake asked for, run here

    before = scrape(f"{live_server.url}/metrics")
    assert (jobs(before, "NOT_STARTED"), jobs(before, "FINISHED")) == (1, 0)
    assert before[("stagingsvc_queue_length", (("queue", "staging"),))] == 1

    _, worker_url = start_metrics_worker(start_worker, tmp_path / "prometheus")
    job = wait_for_job(Job.objects.get(uuid=request_id))
    assert job.status == JobStatus.FINISHED

    after = scrape(f"{live_server.url}/metrics")
    assert (jobs(after, "NOT_STARTED"), jobs(after, "FINISHED")) == (0, 1)
    assert after[("stagingsvc_queue_length", (("queue", "staging"),))] == 0

    completed = ("stagingsvc_subjobs_completed_total", (("status", "FINISHED"),))
    wait_until(lambda: completed in scrape(worker_url), timeout=30, what="the worker's counters")
    counted = scrape(worker_url)
    assert counted[completed] == 1
    assert counted[("stagingsvc_items_staged_total", ())] == 3
    assert counted[("stagingsvc_items_failed_total", ())] == 0
    assert counted[("stagingsvc_bytes_staged_total", ())] == sum(map(len, contents.values()))
    duration = ("stagingsvc_subjob_duration_seconds_count", (("status", "FINISHED"),))
    assert counted[duration] == 1
    # The pool's processes query the database through django-prometheus too.
    assert any(name == "django_db_execute_total" for name, _ in counted)


def test_the_worker_counts_the_repairs_of_periodic_tasks(store, metrics_worker):
    _, worker_url = metrics_worker
    staged = Path(store.staging_root) / "old" / "copy.dat"
    staged.parent.mkdir()
    staged.write_bytes(b"expired")
    job = JobFactory(store=store, status=JobStatus.FINISHED)
    Pin.objects.create(
        job=job, store=store, path="old/copy.dat", expires_at=timezone.now() - timedelta(days=1)
    )

    assert repairs_counted(worker_url, "sweep_unpinned_copies", "copies_removed") == 1
    assert not staged.exists()


def test_the_retention_task_purges_old_jobs_on_a_worker_and_counts_them(store, metrics_worker):
    _, worker_url = metrics_worker
    ended = timezone.now() - timedelta(days=45)
    old = JobFactory(store=store, status=JobStatus.FINISHED, finished_at=ended)
    recent = JobFactory(store=store, status=JobStatus.FINISHED, finished_at=timezone.now())

    assert repairs_counted(worker_url, "purge_old_jobs", "jobs_purged") == 1
    assert not Job.objects.filter(pk=old.pk).exists()
    assert Job.objects.filter(pk=recent.pk).exists()


def test_json_log_lines_of_a_task_carry_job_subjob_and_worker_host(
    store, archive_files, client_for, start_worker
):
    present, vanished = archive_files({"keep.txt": b"keep", "gone.txt": b"gone"})
    (Path(store.archive_root) / "gone.txt").unlink()
    response = client_for(Role.DATA_USER).post(
        "/dts/staging", {"ids": [present.id, vanished.id]}, format="json"
    )
    job = Job.objects.get(uuid=response.json()["request_id"])
    subjob = job.subjobs.get()

    worker = start_worker(concurrency=1, LOG_FORMAT="json")
    wait_for_job(job)
    wait_until(lambda: "items staged" in worker.log(), timeout=30, what="the sub-job's last line")
    subjob.refresh_from_db()  # its task id is the dispatcher's, given after the submission

    lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    task_lines = [line for line in lines if line.get("task_name") == "tasks.staging.run_subjob"]
    messages = " | ".join(line["message"] for line in task_lines)
    # The engine's own warning, our start and end lines, and Celery's verdict on the task.
    assert "gone.txt" in messages and "failed" in messages
    assert "started" in messages and "items staged" in messages
    assert "succeeded" in messages
    for line in task_lines:
        assert line["job_id"] == str(job.uuid)
        assert line["subjob_id"] == str(subjob.pk)
        assert line["worker_host"] == socket.gethostname()
        assert line["task_id"] == subjob.celery_task_id
        assert {"time", "level", "logger"} <= set(line)
    # The pool process (concurrency 1) ran only this task besides dispatch passes (the control
    # queue's): each of its other lines has the context.
    pool_lines = [
        line
        for line in lines
        if line["process"] != worker.pid and line.get("task_name") != DISPATCH_TASK
    ]
    assert pool_lines and all(line.get("job_id") == str(job.uuid) for line in pool_lines)
