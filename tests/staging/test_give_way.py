"""Giving way: how the slots of a full pool are shared (pure), what a dispatch pass asks of the
owners above their share (real database and Redis), and a worker taking one ask.
tests/integration/test_dispatch_with_workers.py runs it with real workers."""

import pytest
from django.utils import timezone

from staging.models import AccountLimits, Job, JobStatus, SubJob
from staging.selectors_accounts import account_limits_changed
from staging.services.dispatch import subjobs_dispatch, subjobs_submitted
from staging.services.preemption import (
    GiveWay,
    Owner,
    asks_pending,
    fair_targets,
    give_back,
)
from staging.services.transitions import subjob_give_way
from tests.factories import ItemFactory, JobFactory, StoreFactory, SubJobFactory, UserFactory

# --- The share (no database) ------------------------------------------------------------------


def test_two_owners_share_the_worked_slots_evenly():
    owners = {"a": Owner(running=4, waiting=100), "b": Owner(waiting=1)}
    assert fair_targets(4, owners) == {"a": 3, "b": 1}  # b wants only one
    assert give_back(4, owners) == {"a": 1}

    owners = {"a": Owner(running=4, waiting=100), "b": Owner(waiting=100)}
    assert fair_targets(4, owners) == {"a": 2, "b": 2}
    assert give_back(4, owners) == {"a": 2}


def test_three_owners_and_an_uneven_split_stays_where_it_runs():
    owners = {"a": Owner(running=2, waiting=9), "b": Owner(waiting=9), "c": Owner(waiting=9)}
    # Two slots for three owners: the one running keeps one, the oldest waiting gets the other.
    assert fair_targets(2, owners) == {"a": 1, "b": 1, "c": 0}
    assert give_back(2, owners) == {"a": 1}
    # One slot for two: it stays where it runs (no passing back and forth).
    owners = {"a": Owner(running=1, waiting=9), "b": Owner(waiting=9)}
    assert give_back(1, owners) == {}
    # Settled: each runs its share, nobody is asked.
    owners = {"a": Owner(running=2, waiting=9), "b": Owner(running=2, waiting=9)}
    assert give_back(4, owners) == {}


def test_weights_and_owner_limits_shape_the_share():
    owners = {"a": Owner(running=6, waiting=50), "b": Owner(weight=2, waiting=50)}
    assert fair_targets(6, owners) == {"a": 2, "b": 4}
    assert give_back(6, owners) == {"a": 4}

    # b may run only one at once: the rest of the share stays with a.
    owners = {"a": Owner(running=6, waiting=50), "b": Owner(limit=1, waiting=50)}
    assert fair_targets(6, owners) == {"a": 5, "b": 1}
    assert give_back(6, owners) == {"a": 1}


def test_an_owner_above_its_share_stops_one_more_per_message_it_has_queued():
    # The slot freed goes to a message behind the one queued: the worker takes that one first.
    owners = {"a": Owner(running=4, queued=1, waiting=100), "b": Owner(waiting=1)}
    assert fair_targets(5, owners) == {"a": 4, "b": 1}
    assert give_back(5, owners) == {"a": 2}


def test_an_owner_whose_work_all_runs_lacks_nothing():
    owners = {"a": Owner(running=3, waiting=9), "b": Owner(running=1)}
    assert give_back(4, owners) == {}


# --- What a pass asks (database and Redis) ----------------------------------------------------


@pytest.fixture
def asks(broker):
    return asks_pending


def running_job(subjobs: int, *, store, owner=None, priority: int = 3) -> Job:
    """A job whose first ``subjobs`` sub-jobs run (dispatched and taken) and 20 more wait."""
    job = JobFactory(store=store, owner=owner or UserFactory(), status=JobStatus.RUNNING)
    Job.objects.filter(pk=job.pk).update(priority=priority)
    job.refresh_from_db()
    for n in range(1, subjobs + 21):
        SubJobFactory(job=job, sequence=n)
    SubJob.objects.filter(pk__in=job.subjobs.order_by("pk").values("pk")[:subjobs]).update(
        status=JobStatus.RUNNING, dispatched_at=timezone.now(), worker=f"w@h:{n}"
    )
    return job


@pytest.mark.django_db
def test_a_full_store_asks_the_owner_above_its_share(asks, settings):
    store = StoreFactory(max_active=2)
    big = running_job(2, store=store)
    small = JobFactory(store=store, owner=UserFactory())
    SubJobFactory(job=small)

    assert subjobs_dispatch() == 0  # the store is full
    assert asks() == {f"{store.pk}:{big.owner_id}:3": 1}


@pytest.mark.django_db
def test_one_owner_alone_is_never_asked(asks):
    store = StoreFactory(max_active=2)
    owner = UserFactory()
    running_job(2, store=store, owner=owner)
    second = JobFactory(store=store, owner=owner)
    SubJobFactory(job=second)

    subjobs_dispatch()
    assert asks() == {}


@pytest.mark.django_db
def test_the_in_flight_bound_asks_across_stores(asks, settings):
    settings.STAGING = {**settings.STAGING, "DISPATCH_MAX_IN_FLIGHT": 4}
    big = running_job(4, store=StoreFactory())
    small = JobFactory(store=StoreFactory(), owner=UserFactory())
    SubJobFactory(job=small)

    subjobs_dispatch()
    assert asks() == {f"all:{big.owner_id}:3": 1}


@pytest.mark.django_db
def test_a_weight_counts_in_the_ask(asks):
    store = StoreFactory(max_active=3)
    heavy = UserFactory()
    AccountLimits.objects.create(user=heavy, dispatch_weight=2)
    account_limits_changed()
    big = running_job(3, store=store)
    for _ in range(2):
        SubJobFactory(job=JobFactory(store=store, owner=heavy))

    subjobs_dispatch()
    assert asks() == {f"{store.pk}:{big.owner_id}:3": 2}


@pytest.mark.django_db
def test_giving_way_is_within_one_priority(asks):
    store = StoreFactory(max_active=2)
    running_job(2, store=store, priority=5)  # urgent work is not asked to make room
    SubJobFactory(job=JobFactory(store=store, owner=UserFactory()))

    subjobs_dispatch()
    assert asks() == {}


@pytest.mark.django_db
def test_turned_off_nothing_is_asked(asks, settings):
    settings.STAGING = {**settings.STAGING, "DISPATCH_PREEMPT": False}
    store = StoreFactory(max_active=2)
    running_job(2, store=store)
    SubJobFactory(job=JobFactory(store=store, owner=UserFactory()))

    subjobs_dispatch()
    assert asks() == {}


@pytest.fixture
def big_asked(broker, settings) -> Job:
    """A job holding both slots of its store, asked for one by a newcomer; checked at once."""
    settings.STAGING = {**settings.STAGING, "DISPATCH_YIELD_CHECK_SECONDS": 0}
    store = StoreFactory(max_active=2)
    big = running_job(2, store=store)
    SubJobFactory(job=JobFactory(store=store, owner=UserFactory()))
    subjobs_dispatch()
    return big


@pytest.mark.django_db
def test_each_slot_asked_is_given_by_one_sub_job_only(asks, big_asked):
    first, second = GiveWay(big_asked), GiveWay(big_asked)
    assert not first.asked(files_done=0)  # a run that has not finished a file goes on
    assert first.asked(files_done=1)
    assert not second.asked(files_done=1)  # the one slot asked is taken
    assert asks() == {f"{big_asked.store_id}:{big_asked.owner_id}:3": 0}


@pytest.mark.django_db
def test_release_jobs_never_give_way(big_asked):
    big_asked.task = "release"
    assert not GiveWay(big_asked).asked(files_done=1)


@pytest.mark.django_db
def test_giving_way_keeps_finished_files_and_frees_the_slot(broker):
    store = StoreFactory(max_active=1)
    job = running_job(1, store=store)
    subjob = job.subjobs.get(status=JobStatus.RUNNING)
    done = ItemFactory(job=job, subjob=subjob, status=JobStatus.FINISHED)
    partial = ItemFactory(job=job, subjob=subjob, status=JobStatus.RUNNING)

    assert not subjob_give_way(subjob_id=subjob.pk, worker="another@h:1")  # not its lease
    assert subjob_give_way(subjob_id=subjob.pk, worker=subjob.worker)

    subjob.refresh_from_db()
    assert (subjob.status, subjob.dispatched_at, subjob.worker, subjob.failures) == (
        JobStatus.NOT_STARTED,
        None,
        "",
        0,
    )
    done.refresh_from_db()
    partial.refresh_from_db()
    assert (done.status, partial.status) == (JobStatus.FINISHED, JobStatus.NOT_STARTED)
    # Its slot is free: the next pass hands out the oldest waiting sub-job, this one.
    assert subjobs_dispatch() == 1
    assert SubJob.objects.filter(pk=subjob.pk, dispatched_at__isnull=False).exists()


@pytest.mark.django_db
def test_a_submission_to_a_full_store_asks_instead_of_waking_a_pass(broker, settings, asks):
    control = f"{settings.BROKER_KEY_PREFIX}control"
    store = StoreFactory(max_active=2)
    big = running_job(2, store=store)
    SubJobFactory(job=JobFactory(store=store, owner=UserFactory()))

    subjobs_submitted(store_id=store.pk, task="stage")
    assert asks() == {f"{store.pk}:{big.owner_id}:3": 1}
    assert broker.llen(control) == 0  # a pass could hand out nothing here

    subjobs_submitted(store_id=StoreFactory().pk, task="stage")  # a store with room
    assert broker.llen(control) == 1
