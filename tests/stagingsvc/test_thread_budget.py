"""The thread budget of a web process (staging.live): ordinary requests take turns that lend
their own database connections, so however many threads serve them, only as many connections
as turns are kept; waiting slots are few and never block; no turn is ever lost, a request that
finds every turn busy for too long is told so (503) instead of waiting forever, and one user
holds at most LIVE_CONNECTIONS_PER_USER waiting slots."""

import threading

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError, connection, connections

from staging.live import NoTurnFree, ThreadBudget
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def budget_of(**limits) -> ThreadBudget:
    return ThreadBudget(
        **{"ordinary": 1, "live": 4, "live_per_user": 20, "turn_wait": 0.2, **limits}
    )


def in_thread(work):
    """Run ``work`` in a new thread (as gunicorn hands a request to any of its threads)."""
    outcome = {}

    def run():
        try:
            outcome["value"] = work()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    return outcome.get("value")


def test_one_turn_lends_the_same_connection_to_every_thread_that_takes_it():
    budget = budget_of(live=0)

    def request():
        turn = budget.ordinary_turn()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_backend_pid()" if connection.vendor == "postgresql" else "SELECT 1"
            )
            backend = cursor.fetchone()[0]
        wrapper = connections["default"]
        turn.release()
        # The thread keeps no connection of its own once the turn is back.
        left = connections.all(initialized_only=True)
        return wrapper, backend, left

    first_wrapper, first_backend, first_left = in_thread(request)
    second_wrapper, second_backend, second_left = in_thread(request)

    assert first_wrapper is second_wrapper
    assert first_left == second_left == []
    if connection.vendor == "postgresql" and first_wrapper.settings_dict["CONN_MAX_AGE"]:
        assert first_backend == second_backend  # the kept connection itself went on


def test_waiting_slots_run_out_without_blocking_and_come_back_once():
    budget = budget_of(live=2)

    first, second = budget.take_live(), budget.take_live()
    assert first is not None and second is not None
    assert budget.take_live() is None

    first.release()
    first.release()  # twice: still one slot back
    third = budget.take_live()
    assert third is not None
    assert budget.take_live() is None


def test_a_turn_whose_loan_fails_goes_back_to_the_budget(monkeypatch):
    threads = budget_of()

    def broken(alias):
        raise DatabaseError("cannot set up the connection")

    with monkeypatch.context() as patched:
        patched.setattr(connections, "create_connection", broken)
        with pytest.raises(DatabaseError):
            threads.ordinary_turn()

    threads.ordinary_turn().release()  # the only turn is there still


def test_a_turn_whose_connection_fails_to_close_goes_back_to_the_budget(monkeypatch):
    threads = budget_of()
    turn = threads.ordinary_turn()
    wrapper = connections["default"]

    def broken():
        raise DatabaseError("the server closed the connection")

    monkeypatch.setattr(wrapper, "close_if_unusable_or_obsolete", broken)
    with pytest.raises(DatabaseError):
        turn.release()
    monkeypatch.undo()

    threads.ordinary_turn().release()


def test_when_every_turn_stays_taken_a_request_is_told_to_come_back():
    threads = budget_of(turn_wait=0.1)
    taken = threads.ordinary_turn()
    try:
        with pytest.raises(NoTurnFree) as refused:
            threads.ordinary_turn()
    finally:
        taken.release()

    assert refused.value.status_code == 503
    assert refused.value.headers["Retry-After"] == "1"
    assert "Retry-After" in refused.value.detail


def test_one_user_holds_at_most_the_per_user_waiting_slots():
    threads = budget_of(live=10, live_per_user=2)
    alice, bob = UserFactory(), UserFactory()
    first, second, third = (threads.take_live() for _ in range(3))

    assert first.claim_for(alice) and second.claim_for(alice)
    assert not third.claim_for(alice)
    assert threads.take_live().claim_for(bob)  # others are not held back by alice

    first.release()
    first.release()  # twice frees it once
    assert third.claim_for(alice)
    assert not threads.take_live().claim_for(alice)


def test_anonymous_callers_share_one_per_user_allowance():
    threads = budget_of(live=10, live_per_user=1)
    assert threads.take_live().claim_for(AnonymousUser())
    assert not threads.take_live().claim_for(AnonymousUser())


def test_a_request_that_finds_every_turn_busy_too_long_answers_503(client, monkeypatch):
    threads = budget_of(turn_wait=0.1)
    monkeypatch.setattr("staging.live._budget", threads)
    taken = threads.ordinary_turn()  # a request that never ends
    try:
        answer = client.get("/api/v1/jobs/")
    finally:
        taken.release()

    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    assert "request thread" in answer.json()["detail"]
    assert client.get("/api/v1/jobs/").status_code == 401  # served again once a turn is free
