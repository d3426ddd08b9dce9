"""GET /metrics: Prometheus text with django-prometheus's HTTP/DB metrics and ours."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from staging.models import JobStatus
from stagingsvc.celery import app as celery_app
from tests.factories import JobFactory, SubJobFactory

pytestmark = pytest.mark.django_db


def samples(response) -> dict[tuple[str, tuple], float]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def test_it_counts_jobs_by_status_and_active_subjobs(client, broker):
    JobFactory.create_batch(2, status=JobStatus.FINISHED)
    running = JobFactory(status=JobStatus.RUNNING)
    SubJobFactory(job=running, status=JobStatus.RUNNING)
    SubJobFactory(job=running, status=JobStatus.NOT_STARTED)

    found = samples(client.get("/metrics"))

    assert found[("stagingsvc_jobs", (("status", "FINISHED"),))] == 2
    assert found[("stagingsvc_jobs", (("status", "RUNNING"),))] == 1
    assert found[("stagingsvc_jobs", (("status", "CANCELLED"),))] == 0
    assert found[("stagingsvc_subjobs_active", (("status", "RUNNING"),))] == 1
    assert found[("stagingsvc_subjobs_active", (("status", "NOT_STARTED"),))] == 1


def test_it_reports_the_length_of_each_broker_queue(client, broker, settings):
    staging_list = f"{settings.BROKER_KEY_PREFIX}staging"
    broker.rpush(staging_list, "m1", "m2", "m3")

    found = samples(client.get("/metrics"))

    assert found[("stagingsvc_queue_length", (("queue", "staging"),))] == 3
    assert found[("stagingsvc_queue_length", (("queue", "control"),))] == 0
    assert found[("stagingsvc_broker_up", ())] == 1


def test_it_still_answers_when_the_broker_does_not(client, monkeypatch):
    monkeypatch.setattr(celery_app.conf, "broker_url", "redis://127.0.0.1:1/0")
    found = samples(client.get("/metrics"))
    assert found[("stagingsvc_broker_up", ())] == 0
    assert ("stagingsvc_queue_length", (("queue", "staging"),)) not in found
    assert ("stagingsvc_jobs", (("status", "RUNNING"),)) in found


def test_it_includes_django_request_and_database_metrics(client, broker):
    client.get("/healthz")
    text = client.get("/metrics").content.decode()
    assert "django_http_requests_total_by_view_transport_method_total" in text
    assert "django_db_execute_total" in text


def test_with_a_token_set_a_scrape_without_it_is_refused(client, settings):
    settings.METRICS_TOKEN = "scrape-secret"
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"] == "Bearer"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    allowed = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert allowed.status_code == 200
    assert b"stagingsvc_jobs" in allowed.content


def test_a_scrape_is_served_from_the_cache_for_a_few_seconds(
    client, broker, settings, django_assert_num_queries
):
    settings.METRICS_CACHE_SECONDS = 30
    JobFactory(status=JobStatus.RUNNING)
    first = samples(client.get("/metrics"))
    JobFactory(status=JobStatus.RUNNING)

    with django_assert_num_queries(0):
        again = samples(client.get("/metrics"))

    assert again[("stagingsvc_jobs", (("status", "RUNNING"),))] == 1
    assert first == again
