"""Flower, the Celery monitor operators run beside the service, on our broker: it starts with
our app and settings, lists our workers through its HTTP API, and refuses the API without its
credentials."""

import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.integration.stack import free_port
from tests.workers import REPO_ROOT, worker_environment

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CREDENTIALS = ("ops", "flower-secret")


@pytest.fixture
def flower(broker, tmp_path):
    port = free_port()
    log_path = tmp_path / "flower.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "stagingsvc",
                "flower",
                "--address=127.0.0.1",
                f"--port={port}",
                f"--basic-auth={':'.join(CREDENTIALS)}",
            ],
            cwd=REPO_ROOT,
            env=worker_environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()
            try:
                requests.get(f"{base}/healthcheck", timeout=2)
                break
            except requests.RequestException:
                time.sleep(0.3)
        else:
            pytest.fail(f"flower did not answer:\n{log_path.read_text()}")
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_flower_lists_our_running_worker(flower, start_worker):
    worker = start_worker(concurrency=1, queues="staging,control")
    node_prefix = worker.name.split("@")[0] + "@"
    deadline = time.monotonic() + 60
    listed: dict = {}
    while time.monotonic() < deadline:
        response = requests.get(
            f"{flower}/api/workers", params={"refresh": "1"}, auth=CREDENTIALS, timeout=20
        )
        assert response.status_code == 200, response.text
        listed = response.json()
        if any(name.startswith(node_prefix) for name in listed):
            break
        time.sleep(1)
    (name,) = [name for name in listed if name.startswith(node_prefix)]
    queues = {queue["name"] for queue in listed[name]["active_queues"]}
    assert queues == {"staging", "control"}
    assert "tasks.staging.stage_subjob" in listed[name]["registered"]  # for an upgrade's messages
    assert "tasks.staging.run_subjob" in listed[name]["registered"]


def test_flower_refuses_its_api_without_credentials(flower):
    assert requests.get(f"{flower}/api/workers", timeout=10).status_code == 401
