"""GET /metrics: Prometheus text with django-prometheus's HTTP/DB metrics and ours."""

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from staging.models import JobStatus, Store
from stagingsvc.celery import app as celery_app
from tests.factories import JobFactory, StoreFactory, SubJobFactory, UserFactory

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
    assert found[("stagingsvc_queue_length", (("queue", "webhooks"),))] == 0
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


def test_it_reports_the_dispatchers_slots_and_why_sub_jobs_wait(client, broker, settings, tmp_path):
    settings.STAGING = {**settings.STAGING, "DISPATCH_MAX_IN_FLIGHT": 8}
    tape = StoreFactory(slug="tape1", max_active=2, staging_root=str(tmp_path))
    StoreFactory(slug="full1", free_space_low="10%", staging_full_since=timezone.now())
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    busy = JobFactory(store=tape, owner=alice, status=JobStatus.RUNNING)
    SubJobFactory.create_batch(2, job=busy, status=JobStatus.RUNNING)
    for _ in range(3):
        SubJobFactory(job=busy)
    on_full = JobFactory(store=Store.objects.get(slug="full1"), owner=bob, priority=5)
    SubJobFactory(job=on_full)

    found = samples(client.get("/metrics"))

    assert found[("stagingsvc_dispatch_in_flight", ())] == 2
    assert found[("stagingsvc_dispatch_max_in_flight", ())] == 8
    assert found[("stagingsvc_store_subjobs_in_flight", (("store", "tape1"),))] == 2
    assert found[("stagingsvc_store_max_active", (("store", "tape1"),))] == 2
    assert ("stagingsvc_store_max_active", (("store", "full1"),)) not in found  # no limit
    waiting = (("reason", "store at its limit"), ("store", "tape1"))
    assert found[("stagingsvc_subjobs_waiting", waiting)] == 3
    waiting = (("reason", "staging area full"), ("store", "full1"))
    assert found[("stagingsvc_subjobs_waiting", waiting)] == 1
    assert found[("stagingsvc_staging_area_full", (("store", "full1"),))] == 1
    assert found[("stagingsvc_staging_area_full", (("store", "tape1"),))] == 0
    assert found[("stagingsvc_staging_area_free_bytes", (("store", "tape1"),))] > 0
    assert found[("stagingsvc_subjobs_waiting_by_priority", (("priority", "3"),))] == 3
    assert found[("stagingsvc_subjobs_waiting_by_priority", (("priority", "5"),))] == 1
    assert found[("stagingsvc_owners_waiting", (("priority", "5"),))] == 1
    assert found[("stagingsvc_owner_subjobs_waiting", (("owner", "alice"),))] == 3
    assert found[("stagingsvc_owner_subjobs_waiting", (("owner", "bob"),))] == 1
