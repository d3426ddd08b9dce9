"""The dispatcher: which waiting sub-jobs it hands to the broker, within which limits. Passes
are called directly; the messages are counted in the real Redis broker.
tests/integration/test_dispatch_with_workers.py runs it with real workers and beat."""

import json
import re
import threading

import pytest
from celery import current_app
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from staging.models import AccountLimits, Job, JobStatus, Store, SubJob
from staging.models_tape import TapeLibrary
from staging.selectors_accounts import account_limits_changed
from staging.services.dispatch import (
    ADVISORY_LOCK_ID,
    AFTER_END_LOCK_WAIT_MS,
    WAKE_KEY,
    _lock_dispatch,
    dispatch_after_end,
    subjobs_dispatch,
)
from staging.services.execution import subjob_claim
from staging.services.recovery import subjobs_reconcile
from tests.factories import JobFactory, StoreFactory, SubJobFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(broker, settings):
    """Messages in the staging queue of this test run's broker."""
    return lambda: broker.llen(f"{settings.BROKER_KEY_PREFIX}staging")


@pytest.fixture(autouse=True)
def in_flight_limit(settings):
    settings.STAGING = {**settings.STAGING, "DISPATCH_MAX_IN_FLIGHT": 100}


def job_with(subjobs: int, *, store=None, owner=None, task="stage") -> Job:
    job = JobFactory(store=store or StoreFactory(), owner=owner or UserFactory(), task=task)
    for sequence in range(1, subjobs + 1):
        SubJobFactory(job=job, sequence=sequence)
    return job


def dispatched(job: Job) -> int:
    return job.subjobs.filter(dispatched_at__isnull=False).count()


@pytest.fixture
def worker_takes(broker, settings):
    """What a worker does with the next message of the staging queue: take its sub-job (and,
    unless told to keep running, end it). Returns the sub-job."""

    def take(*, finish: bool = True) -> SubJob:
        message = json.loads(broker.rpop(f"{settings.BROKER_KEY_PREFIX}staging"))
        subjob = SubJob.objects.get(celery_task_id=message["headers"]["id"])
        assert subjob_claim(subjob_id=subjob.pk, worker="w@h:1", task_id=subjob.celery_task_id)
        if finish:
            finish_subjob(subjob)
        return subjob

    return take


def finish_subjob(subjob: SubJob) -> None:
    SubJob.objects.filter(pk=subjob.pk).update(status=JobStatus.FINISHED, worker="")


def test_it_publishes_every_waiting_subjob_when_nothing_limits_it(queued):
    job = job_with(5)

    assert subjobs_dispatch() == 5
    assert dispatched(job) == 5
    assert queued() == 5
    assert subjobs_dispatch() == 0  # each sub-job is handed out once
    assert queued() == 5


def test_each_message_names_its_sub_job_s_job_so_the_worker_logs_it_without_a_query(
    broker, settings
):
    from types import SimpleNamespace

    from tasks.instrumentation import _subjob_context

    job = job_with(1)
    subjobs_dispatch()
    message = json.loads(broker.lindex(f"{settings.BROKER_KEY_PREFIX}staging", 0))
    request = SimpleNamespace(**message["headers"])
    subjob_id = job.subjobs.get().pk

    with CaptureQueriesContext(connection) as read:
        context = _subjob_context(subjob_id, request)

    assert context["job_id"] == str(job.uuid)
    assert read.captured_queries == []


def test_a_store_limit_holds_and_a_freed_slot_is_filled(queued, worker_takes):
    store = StoreFactory(max_active=2)
    job = job_with(6, store=store)

    assert subjobs_dispatch() == 2
    assert queued() == 2
    running = worker_takes(finish=False)
    assert subjobs_dispatch() == 0  # a running sub-job holds its slot

    finish_subjob(running)
    assert subjobs_dispatch() == 1
    assert queued() == 2
    assert dispatched(job) == 3


def test_a_store_limit_does_not_hold_back_other_stores(queued):
    tape = job_with(4, store=StoreFactory(max_active=1))
    disk = job_with(4, store=StoreFactory())

    assert subjobs_dispatch() == 5
    assert (dispatched(tape), dispatched(disk)) == (1, 4)


def test_an_owner_limit_holds_for_every_job_of_the_owner(queued):
    owner = UserFactory()
    AccountLimits.objects.create(user=owner, max_active_subjobs=3)
    account_limits_changed()
    first, second = job_with(4, owner=owner), job_with(4, owner=owner)
    other = job_with(2)

    assert subjobs_dispatch() == 5
    assert dispatched(first) + dispatched(second) == 3
    assert dispatched(other) == 2


def test_an_owner_limit_set_for_a_role_holds_for_its_members(queued):
    from django.contrib.auth.models import Group

    role = Group.objects.create(name="batch")
    AccountLimits.objects.create(role=role, max_active_subjobs=1)
    account_limits_changed()
    member = UserFactory(roles=["batch"])
    job = job_with(3, owner=member)

    assert subjobs_dispatch() == 1
    assert dispatched(job) == 1


def test_the_global_bound_keeps_the_broker_small_whatever_waits(queued, worker_takes, settings):
    settings.STAGING = {**settings.STAGING, "DISPATCH_MAX_IN_FLIGHT": 4}
    jobs = [job_with(50) for _ in range(4)]

    assert subjobs_dispatch() == 4
    assert subjobs_dispatch() == 0
    assert queued() == 4
    worker_takes()
    worker_takes()
    assert queued() == 2
    assert subjobs_dispatch() == 2
    assert queued() == 4
    assert sum(dispatched(job) for job in jobs) == 6


def test_oldest_waiting_subjobs_go_first(queued):
    store = StoreFactory(max_active=3)
    old, new = job_with(2, store=store), job_with(2, store=store)

    subjobs_dispatch()

    assert (dispatched(old), dispatched(new)) == (2, 1)


def test_a_raised_limit_applies_at_the_next_pass_without_a_restart(queued):
    store = StoreFactory(max_active=1)
    job = job_with(4, store=store)
    subjobs_dispatch()

    call_command("storelimit", store.slug, "--max-active", "3")
    assert subjobs_dispatch() == 2
    call_command("storelimit", store.slug, "--unlimited")
    assert subjobs_dispatch() == 1
    assert dispatched(job) == 4


def test_storelimit_refuses_a_zero_limit_and_an_unknown_store():
    store = StoreFactory(max_active=2)

    with pytest.raises(CommandError, match="at least 1"):
        call_command("storelimit", store.slug, "--max-active", "0")
    with pytest.raises(CommandError, match="no store nowhere"):
        call_command("storelimit", "nowhere", "--max-active", "2")
    assert Store.objects.get(pk=store.pk).max_active == 2


def test_release_jobs_never_wait_for_capacity(queued):
    store = StoreFactory(max_active=1)
    job_with(3, store=store)
    release = job_with(1, store=store, task="release")

    assert subjobs_dispatch() == 2
    assert dispatched(release) == 1


def test_release_subjobs_travel_on_the_control_queue(broker, queued, settings):
    store = StoreFactory()
    job_with(2, store=store)
    release = job_with(1, store=store, task="release")

    subjobs_dispatch()

    assert queued() == 2  # the staging work only
    (message,) = broker.lrange(f"{settings.BROKER_KEY_PREFIX}control", 0, -1)
    assert json.loads(message)["headers"]["id"] == release.subjobs.get().celery_task_id


def test_subjobs_of_cancelled_or_failing_jobs_are_not_dispatched(queued):
    cancelling = job_with(2)
    Job.objects.filter(pk=cancelling.pk).update(status=JobStatus.CANCELLING)
    crashed = job_with(1)
    crashed.subjobs.update(failures=3)

    assert subjobs_dispatch() == 0
    assert queued() == 0


def test_the_reconciler_republishes_only_what_was_dispatched(broker, queued, settings):
    settings.STAGING = {**settings.STAGING, "REDISPATCH_AFTER_SECONDS": 0}
    store = StoreFactory(max_active=2)
    job = job_with(10, store=store)
    subjobs_dispatch()
    broker.flush_test_keys()  # the broker restarted empty

    assert subjobs_reconcile() == 2
    assert queued() == 2
    assert dispatched(job) == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_passes_never_fill_one_slot_twice(queued):
    if connection.vendor != "postgresql":
        pytest.skip("the advisory lock is PostgreSQL's; SQLite serialises writers at BEGIN")
    store = StoreFactory(max_active=3)
    job = job_with(40, store=store)
    barrier = threading.Barrier(4)
    results: list[int] = []

    def pass_() -> None:
        try:
            barrier.wait()
            results.append(subjobs_dispatch())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=pass_) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [0, 0, 0, 3]
    assert dispatched(job) == 3
    assert queued() == 3


# --- Priority and fair share ----------------------------------------------------------------


def bound(settings, n: int) -> None:
    settings.STAGING = {**settings.STAGING, "DISPATCH_MAX_IN_FLIGHT": n}


def test_higher_priorities_go_first_whatever_their_age(queued, settings):
    bound(settings, 3)
    low = job_with(3)
    high = job_with(2)
    Job.objects.filter(pk=high.pk).update(priority=5)
    Job.objects.filter(pk=low.pk).update(priority=1)
    middle = job_with(2)  # the default, 3

    assert subjobs_dispatch() == 3
    assert (dispatched(high), dispatched(middle), dispatched(low)) == (2, 1, 0)


def test_two_owners_share_the_slots_in_turn(queued, settings):
    bound(settings, 4)
    big = job_with(50)
    small = job_with(5)  # submitted after the big one, by someone else

    assert subjobs_dispatch() == 4
    assert (dispatched(big), dispatched(small)) == (2, 2)


def test_three_owners_share_the_slots_in_turn(queued, settings):
    bound(settings, 6)
    jobs = [job_with(20) for _ in range(3)]

    subjobs_dispatch()

    assert [dispatched(job) for job in jobs] == [2, 2, 2]


def test_the_slot_freed_by_a_big_job_goes_to_a_newcomer_at_once(queued, worker_takes, settings):
    bound(settings, 4)
    job_with(100)
    assert subjobs_dispatch() == 4  # every slot is the big job's
    small = job_with(10)

    worker_takes()
    assert subjobs_dispatch() == 1
    assert dispatched(small) == 1  # not behind the other 96


def test_a_weight_of_two_gets_twice_the_slots(queued, settings):
    bound(settings, 6)
    heavy, light = UserFactory(), UserFactory()
    AccountLimits.objects.create(user=heavy, dispatch_weight=2)
    account_limits_changed()
    light_job, heavy_job = job_with(20, owner=light), job_with(20, owner=heavy)

    subjobs_dispatch()

    assert (dispatched(light_job), dispatched(heavy_job)) == (2, 4)


def test_a_pass_reads_every_owner_s_limits_and_roles_in_one_query(queued, settings):
    if connection.vendor != "postgresql":
        pytest.skip("the roles and limit rows are read as PostgreSQL arrays")
    bound(settings, 6)
    settings.ACCOUNT_LIMITS = {**settings.ACCOUNT_LIMITS, "ROLES": {"data-user": {}}}
    owners = [UserFactory(roles=["data-user"]) for _ in range(3)]
    AccountLimits.objects.create(user=owners[0], dispatch_weight=4)
    account_limits_changed()
    jobs = [job_with(20, owner=owner) for owner in owners]

    with CaptureQueriesContext(connection) as ran:
        subjobs_dispatch()

    reads = [q["sql"] for q in ran.captured_queries]
    of_owners = [sql for sql in reads if re.search(r'"auth_user"|"auth_user_groups"', sql)]
    of_owners += [sql for sql in reads if '"staging_accountlimits"' in sql and sql not in of_owners]
    assert len(of_owners) == 1, of_owners
    assert [dispatched(job) for job in jobs] == [4, 1, 1]  # the weights still hold


def test_within_one_owner_the_oldest_job_goes_first(queued, settings):
    bound(settings, 3)
    owner = UserFactory()
    first, second = job_with(2, owner=owner), job_with(2, owner=owner)

    subjobs_dispatch()

    assert (dispatched(first), dispatched(second)) == (2, 1)


def test_a_full_store_does_not_keep_an_owner_from_its_other_stores(queued, settings):
    bound(settings, 10)
    owner = UserFactory()
    tape = job_with(5, store=StoreFactory(max_active=1), owner=owner)
    disk = job_with(3, store=StoreFactory(), owner=owner)

    assert subjobs_dispatch() == 4
    assert (dispatched(tape), dispatched(disk)) == (1, 3)


# --- The pass after a sub-job's end -----------------------------------------------------------


def test_the_worker_whose_sub_job_ended_fills_its_slot_without_a_wake(
    queued, worker_takes, broker, settings
):
    control = f"{settings.BROKER_KEY_PREFIX}control"
    store = StoreFactory(max_active=1)
    job = job_with(3, store=store)
    assert subjobs_dispatch() == 1
    worker_takes()  # and ends it
    broker.delete(control)

    dispatch_after_end()

    assert queued() == 1
    assert dispatched(job) == 2
    assert broker.llen(control) == 0  # no dispatch task went through the broker


def test_the_pass_after_an_end_with_nothing_waiting_is_two_queries(queued, worker_takes):
    job = job_with(1)
    assert subjobs_dispatch() == 1
    worker_takes()  # and ends it: nothing waits now
    JobFactory(store=job.store, status=JobStatus.FINISHED)  # a job over wants nothing

    with CaptureQueriesContext(connection) as ran:
        dispatch_after_end()

    # The dispatcher's lock and whether anything waits (besides transaction control).
    statements = [q["sql"] for q in ran.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) <= 2, statements
    assert queued() == 0


def test_a_pass_reads_the_stores_once(queued):
    tape = StoreFactory(kind="posix-tape", free_space_low="1%")
    TapeLibrary.objects.create(store=tape, scheduler=True)
    job_with(2)

    with CaptureQueriesContext(connection) as ran:
        assert subjobs_dispatch() == 2

    reads = [q["sql"] for q in ran.captured_queries if q["sql"].startswith("SELECT")]
    of_stores = [sql for sql in reads if re.search(r'FROM "staging_(store|tapelibrary)"', sql)]
    assert len(of_stores) == 1, of_stores


@pytest.fixture
def one_ended(worker_takes, broker, settings):
    """``one_ended()``: a pass hands out one waiting sub-job and a worker ends it; the control
    queue and the wake key are then emptied. Returns the control queue's key. (The tests of an
    end beside a held lock: PostgreSQL's advisory lock.)"""
    if connection.vendor != "postgresql":
        pytest.skip("the advisory lock is PostgreSQL's; SQLite serialises writers at BEGIN")
    control = f"{settings.BROKER_KEY_PREFIX}control"

    def end() -> str:
        assert subjobs_dispatch() == 1
        worker_takes()
        broker.delete(control, f"{settings.BROKER_KEY_PREFIX}{WAKE_KEY}")
        return control

    return end


def after_end_beside_a_held_lock(held_for: float = 30) -> threading.Thread:
    """``dispatch_after_end`` in a worker's own connection while this one holds the
    dispatcher's lock (a pass, or a submission handing out its own sub-job) until the worker
    is done or ``held_for`` seconds passed; returns its thread, ended unless it still waits."""

    def worker_process() -> None:
        try:
            dispatch_after_end()
        finally:
            connections.close_all()

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK_ID])
        thread = threading.Thread(target=worker_process)
        thread.start()
        thread.join(held_for)
    thread.join(30)
    return thread


@pytest.mark.django_db(transaction=True)  # the worker's connection sees what waits
def test_the_worker_asks_for_a_pass_when_another_pass_holds_the_lock(queued, broker, one_ended):
    job = job_with(3, store=StoreFactory(max_active=1))
    control = one_ended()

    thread = after_end_beside_a_held_lock()

    assert not thread.is_alive()  # it waited a while only
    assert queued() == 0 and dispatched(job) == 1  # nothing handed out beside the other pass
    assert broker.llen(control) == 1  # a pass is asked for, to follow the one running


@pytest.mark.django_db(transaction=True)  # the worker's connection sees what waits
def test_the_worker_follows_a_short_pass_holding_the_lock_with_its_own(queued, broker, one_ended):
    job = job_with(3, store=StoreFactory(max_active=1))
    control = one_ended()

    after_end_beside_a_held_lock(held_for=AFTER_END_LOCK_WAIT_MS / 1000 / 4)

    assert queued() == 1 and dispatched(job) == 2  # the slot filled once the lock was free
    assert broker.llen(control) == 0  # with no pass through the broker


@pytest.mark.django_db(transaction=True)  # the worker's connection sees what waits
def test_the_worker_asks_for_no_pass_when_another_holds_the_lock_and_nothing_waits(
    queued, broker, one_ended
):
    job_with(1)
    control = one_ended()  # nothing waits now

    thread = after_end_beside_a_held_lock()

    assert not thread.is_alive()
    assert broker.llen(control) == 0  # whatever the holder leaves waiting, it passes for


def test_a_lost_release_message_is_republished_while_other_control_work_waits(
    broker, queued, settings
):
    settings.STAGING = {**settings.STAGING, "REDISPATCH_AFTER_SECONDS": 0}
    subjobs_reconcile()  # leaves the marker: the broker did not lose its data below
    release = job_with(2, task="release")
    subjobs_dispatch()
    broker.delete(f"{settings.BROKER_KEY_PREFIX}control")  # both release messages lost
    for _ in range(2):  # beat's work waits on the control queue meanwhile
        current_app.send_task("tasks.maintenance.resend_due_webhooks", queue="control")

    assert subjobs_reconcile() == 2
    messages = broker.lrange(f"{settings.BROKER_KEY_PREFIX}control", 0, -1)
    tasks = sorted(json.loads(m)["headers"]["task"] for m in messages)
    assert tasks.count("tasks.staging.run_subjob") == 2
    assert dispatched(release) == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's lock_timeout")
def test_the_after_end_wait_for_the_lock_bounds_that_wait_only():
    # The rest of the pass (recording task ids under sub-job row locks another transaction may
    # hold) waits as every pass does: a timeout there would roll back task ids whose messages
    # an earlier batch already sent.
    with connection.cursor() as cursor:
        cursor.execute("SHOW lock_timeout")
        before = cursor.fetchone()[0]
        with transaction.atomic():
            _lock_dispatch(at_most_ms=250)
            cursor.execute("SHOW lock_timeout")
            during = cursor.fetchone()[0]

    assert during == before
