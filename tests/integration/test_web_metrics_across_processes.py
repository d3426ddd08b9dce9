"""gunicorn with several worker processes in prometheus multiprocess mode: /metrics, whichever
process answers it, adds up the requests every process served; with LOG_FORMAT=json gunicorn's
own lines are JSON, each written once."""

import json

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.stack import gunicorn_serving

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


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
    metrics_dir = tmp_path / "prometheus"
    log_path = tmp_path / "gunicorn.log"
    with gunicorn_serving(
        log_path,
        WEB_CONCURRENCY="3",
        WEB_THREADS="1",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        STAGINGSVC_VAR_DIR=str(tmp_path / "var"),
        LOG_FORMAT="json",
    ) as base:
        before = healthz_requests(requests.get(f"{base}/metrics", timeout=60).text)
        # A fresh connection per request lets every gunicorn process take some of them.
        for _ in range(30):
            assert requests.get(f"{base}/healthz", timeout=60).status_code == 200

        after = healthz_requests(requests.get(f"{base}/metrics", timeout=60).text)
        assert after - before == 30
        counting_processes = {p.stem.rsplit("_", 1)[-1] for p in metrics_dir.glob("counter_*.db")}
        assert len(counting_processes) >= 2, "one process served every request"

    access = [
        json.loads(line)
        for line in log_path.read_text().splitlines()
        if line.startswith("{") and '"gunicorn.access"' in line
    ]
    assert sum("GET /healthz" in line["message"] for line in access) == 30
