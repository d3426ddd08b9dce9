"""Why work waits, in the admin: the dashboard's Dispatch panel (slots per store, waiting
sub-jobs by reason, the fair-share queue) and the job page's "Waiting:" line, both read with the
dispatcher's own capacity rules (staging.selectors_dispatch)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from staging.models import AccountLimits, Job, JobStatus, Store, SubJob
from tests.factories import JobFactory, StoreFactory, SubJobFactory, UserFactory

DASHBOARD = "/admin/dashboard/"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def in_flight_bound(settings):
    settings.STAGING = {**settings.STAGING, "DISPATCH_MAX_IN_FLIGHT": 10}


def job_with(*, running: int = 0, waiting: int = 0, **fields) -> Job:
    """A job with ``running`` sub-jobs holding slots and ``waiting`` never dispatched."""
    job = JobFactory(status=JobStatus.RUNNING if running else JobStatus.NOT_STARTED, **fields)
    now = timezone.now()
    SubJob.objects.bulk_create(
        [
            SubJob(job=job, sequence=n, status=JobStatus.RUNNING, dispatched_at=now)
            for n in range(1, running + 1)
        ]
        + [SubJob(job=job, sequence=running + n) for n in range(1, waiting + 1)]
    )
    return job


def page_of(client, job: Job) -> str:
    return client.get(f"/admin/staging/job/{job.pk}/change/").content.decode()


def test_the_dashboard_shows_each_store_in_flight_over_its_limit(operator_client):
    tape = StoreFactory(slug="tape1", max_active=2)
    disk = StoreFactory(slug="disk1")
    job_with(store=tape, running=2, waiting=5)
    job_with(store=disk, running=1, waiting=0)

    response = operator_client.get(DASHBOARD)

    page = response.content.decode()
    assert "(3 of 10 slots in flight)" in page
    loads = {load.store.slug: load for load, _ in response.context["dispatch_stores"]}
    assert (loads["tape1"].active, loads["tape1"].limit) == (2, 2)
    assert (loads["disk1"].active, loads["disk1"].limit) == (1, None)
    assert '<td class="count">2 / 2</td>' in page
    assert '<td class="count">1 / <span class="quiet">unlimited</span></td>' in page
    assert '<span class="wait-reason">5 store at its limit</span>' in page


def test_the_dashboard_counts_waiting_sub_jobs_by_reason(operator_client):
    full = StoreFactory(
        slug="full1", free_space_low="10%", staging_full_since=timezone.now() - timedelta(hours=1)
    )
    capped_owner = UserFactory(username="carol")
    AccountLimits.objects.create(user=capped_owner, max_active_subjobs=1)
    job_with(store=full, waiting=3)
    job_with(owner=capped_owner, running=1, waiting=4)
    job_with(waiting=2)  # nothing holds it back: the next pass takes it

    response = operator_client.get(DASHBOARD)

    assert dict(response.context["dispatch_reasons"]) == {
        "staging area full": 3,
        "owner at their limit": 4,
        "next pass": 2,
    }
    page = response.content.decode()
    assert "full since" in page


def test_with_every_slot_taken_lower_priorities_wait_for_higher_ones(operator_client, settings):
    settings.STAGING = {**settings.STAGING, "DISPATCH_MAX_IN_FLIGHT": 2}
    job_with(running=2)
    urgent = job_with(waiting=1, priority=5)
    routine = job_with(waiting=3, priority=3)

    response = operator_client.get(DASHBOARD)

    assert dict(response.context["dispatch_reasons"]) == {
        "higher priority first": 3,
        "all slots taken": 1,
    }
    assert "Waiting:</strong> priority 5 jobs first" in page_of(operator_client, routine)
    assert "all 2 dispatch slots taken" in page_of(operator_client, urgent)


def test_the_fair_share_queue_names_who_is_served_next(operator_client):
    busy = UserFactory(username="alice")
    newcomer = UserFactory(username="bob")
    heavy = UserFactory(username="dora")
    AccountLimits.objects.create(user=heavy, dispatch_weight=4)
    job_with(owner=busy, running=3, waiting=100)
    job_with(owner=newcomer, waiting=10)
    job_with(owner=heavy, running=3, waiting=50)

    response = operator_client.get(DASHBOARD)

    (level,) = response.context["dispatch"].queue
    assert level.priority == 3
    # Fewest in flight per unit of weight first: bob 0, dora 3/4, alice 3.
    assert [(t.name, t.in_flight, t.weight, t.is_next) for t in level.owners] == [
        ("bob", 0, 1, True),
        ("dora", 3, 4, False),
        ("alice", 3, 1, False),
    ]
    assert '<tr class="next-turn">\n            <td>bob</td>' in response.content.decode()


def test_the_job_page_says_why_a_job_waits(operator_client):
    tape = StoreFactory(slug="tape1", max_active=2)
    job_with(store=tape, running=2)
    behind_store = job_with(store=tape, waiting=1)
    alice = UserFactory(username="alice")
    AccountLimits.objects.create(user=alice, max_active_subjobs=1)
    job_with(owner=alice, running=1)
    behind_owner = job_with(owner=alice, waiting=1)
    since = timezone.now().replace(hour=12, minute=3)
    full = StoreFactory(slug="full1", free_space_low="1GB", staging_full_since=since)
    behind_space = job_with(store=full, waiting=1)
    started = job_with(running=1)

    assert "Waiting:</strong> store tape1 at its limit (2 of 2 in flight)" in page_of(
        operator_client, behind_store
    )
    assert "Waiting:</strong> owner alice at their limit (1 of 1 in flight)" in page_of(
        operator_client, behind_owner
    )
    local = timezone.localtime(since)
    assert f"Waiting:</strong> staging area of store full1 full since {local:%H:%M}" in page_of(
        operator_client, behind_space
    )
    assert "Waiting:</strong>" not in page_of(operator_client, started)


def test_a_dispatched_sub_job_not_yet_taken_waits_for_a_worker(operator_client):
    job = JobFactory()
    SubJobFactory(job=job, dispatched_at=timezone.now())

    assert "Waiting:</strong> dispatched: waiting for a worker" in page_of(operator_client, job)


def test_the_dispatch_panel_costs_the_same_queries_with_100000_waiting_sub_jobs(
    operator_client,
):
    stores = [StoreFactory(slug="tape1", max_active=2), StoreFactory(slug="disk1")]
    owners = [UserFactory(username=name) for name in ("alice", "bob", "carol")]

    def add_jobs(per_job: int) -> None:
        for store in stores:
            for owner in owners:
                for priority in (3, 5):
                    job_with(store=store, owner=owner, priority=priority, waiting=per_job)

    add_jobs(1)
    with CaptureQueriesContext(connection) as few:
        assert operator_client.get(DASHBOARD).status_code == 200
    add_jobs(100_000 // 12)
    assert SubJob.objects.filter(dispatched_at__isnull=True).count() >= 100_000
    with CaptureQueriesContext(connection) as many:
        response = operator_client.get(DASHBOARD)

    assert response.status_code == 200
    # Owners' account limits are cached after the first page: never more queries, often fewer.
    assert len(many) <= len(few)
    tape = next(load for load, _ in response.context["dispatch_stores"] if load.store == stores[0])
    assert tape.waiting_total == 6 * (1 + 100_000 // 12)
    assert Store.objects.count() == 2
