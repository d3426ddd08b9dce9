"""gunicorn with several worker processes in prometheus multiprocess mode: /metrics, whichever
process answers it, adds up the requests every process served; with LOG_FORMAT=json gunicorn's
own lines are JSON, each written once."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.stack import free_port
from tests.workers import REPO_ROOT, worker_environment

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BIN = Path(sys.executable).parent


def healthz_requests(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "django_http_requests_total_by_view_transport_method_total"
                and sample.labels.get("view") == "healthz"
            ):
                return sample.value
    return 0


def test_metrics_add_up_the_requests_of_every_gunicorn_process_and_logs_are_json(tmp_path, broker):
    port = free_port()
    metrics_dir = tmp_path / "prometheus"
    log_path = tmp_path / "gunicorn.log"
    env = worker_environment(
        PORT=str(port),
        HOST="127.0.0.1",
        WEB_CONCURRENCY="3",
        WEB_THREADS="1",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        STAGINGSVC_VAR_DIR=str(tmp_path / "var"),
        LOG_FORMAT="json",
    )
    with open(log_path, "wb") as log:
        web = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", "stagingsvc/gunicorn.conf.py", "stagingsvc.wsgi"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, log_path.read_text()
            try:
                # A long read timeout: a request accepted while Django loads is answered, never
                # abandoned (an abandoned one would be counted later, whenever it is served).
                before = healthz_requests(requests.get(f"{base}/metrics", timeout=60).text)
                break
            except requests.ConnectionError:  # not listening yet
                time.sleep(0.3)
        # A fresh connection per request lets every gunicorn process take some of them.
        for _ in range(30):
            assert requests.get(f"{base}/healthz", timeout=60).status_code == 200

        after = healthz_requests(requests.get(f"{base}/metrics", timeout=60).text)
        assert after - before == 30
        counting_processes = {p.stem.rsplit("_", 1)[-1] for p in metrics_dir.glob("counter_*.db")}
        assert len(counting_processes) >= 2, "one process served every request"
    finally:
        web.send_signal(signal.SIGTERM)
        try:
            web.wait(timeout=30)
        except subprocess.TimeoutExpired:
            web.kill()
            web.wait(timeout=10)

    access = [
        json.loads(line)
        for line in log_path.read_text().splitlines()
        if line.startswith("{") and '"gunicorn.access"' in line
    ]
    assert sum("GET /healthz" in line["message"] for line in access) == 30
