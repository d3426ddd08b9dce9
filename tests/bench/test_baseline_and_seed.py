"""The bench-only views and the seeding SQL, on the test database."""

import json

import pytest
from django.db import connection
from django.test import override_settings
from django.urls import Resolver404, resolve

from bench.seed import SEED_SOURCE, sample_jobs, seed_jobs, seeded_job_count
from bench.status_poll import ENDPOINTS, Endpoint, route_exists
from staging.models import Item, Job, JobStatus
from tests.factories import FileFactory, JobFactory, StoreFactory, UserFactory

pytestmark = pytest.mark.django_db
bench_urls = override_settings(ROOT_URLCONF="bench.urls")


def test_the_service_urls_do_not_include_the_baseline_views():
    with pytest.raises(Resolver404):
        resolve("/bench/baseline/status")


@bench_urls
def test_the_baseline_poll_answers_a_job_status_by_primary_key(client):
    job = JobFactory(status=JobStatus.RUNNING)
    response = client.get("/bench/baseline/status", {"id": job.pk})
    assert response.status_code == 200
    assert response.json() == {"status": "RUNNING"}
    assert client.get("/bench/baseline/status", {"id": job.pk + 1000}).status_code == 404


@bench_urls
def test_the_baseline_submission_writes_the_job_and_its_items(client):
    owner = UserFactory()
    files = FileFactory.create_batch(3, store=StoreFactory())
    response = client.post(
        f"/bench/baseline/submit?owner={owner.pk}",
        json.dumps({"ids": [f.id for f in files]}),
        content_type="application/json",
    )
    assert response.status_code == 201
    job = Job.objects.get(uuid=response.json()["request_id"])
    assert job.owner == owner
    assert Item.objects.filter(job=job).count() == 3


def test_the_status_poll_knows_which_routes_exist():
    dts = next(e for e in ENDPOINTS if e.key == "dts")
    assert route_exists(dts, 1, "8a3bdcf3-3b07-4bfb-9b4b-4a3f3c1e0d3e")
    nowhere = Endpoint("nowhere", "not a route", "/nowhere/{uuid}/peek")
    assert not route_exists(nowhere, 1, "8a3bdcf3-3b07-4bfb-9b4b-4a3f3c1e0d3e")


def test_seeding_tops_the_jobs_up_and_samples_them():
    if connection.vendor != "postgresql":
        pytest.skip("the seeding SQL is PostgreSQL's (generate_series, gen_random_uuid)")
    store, owner = StoreFactory(), UserFactory()
    with connection.cursor() as cursor:
        assert seed_jobs(cursor, store_id=store.pk, owner_id=owner.pk, target=40) == 40
        assert seed_jobs(cursor, store_id=store.pk, owner_id=owner.pk, target=50) == 10
        assert seed_jobs(cursor, store_id=store.pk, owner_id=owner.pk, target=20) == 0
        assert seeded_job_count(cursor) == 50
        sample = sample_jobs(cursor, count=10)
    assert len(sample) == 10
    jobs = Job.objects.filter(source=SEED_SOURCE)
    assert jobs.count() == 50
    assert jobs.filter(status=JobStatus.FINISHED).count() > jobs.count() // 2
    assert {
        str(u) for u in jobs.filter(pk__in=[p for p, _ in sample]).values_list("uuid", flat=True)
    } == {u for _, u in sample}
