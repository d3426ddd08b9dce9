"""The thread budget of a web process (staging.live.ThreadBudget): no turn is ever lost, a
request that finds every turn busy for too long is told so (503) instead of waiting forever,
and one user holds at most LIVE_CONNECTIONS_PER_USER waiting slots."""

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError, connections

from staging.live import NoTurnFree, ThreadBudget
from tests.factories import UserFactory


def budget(**limits) -> ThreadBudget:
    return ThreadBudget(
        **{"ordinary": 1, "live": 4, "live_per_user": 20, "turn_wait": 0.2, **limits}
    )


def test_a_turn_whose_loan_fails_goes_back_to_the_budget(monkeypatch):
    threads = budget()

    def broken(alias):
        raise DatabaseError("cannot set up the connection")

    with monkeypatch.context() as patched:
        patched.setattr(connections, "create_connection", broken)
        with pytest.raises(DatabaseError):
            threads.ordinary_turn()

    threads.ordinary_turn().release()  # the only turn is there still


def test_a_turn_whose_connection_fails_to_close_goes_back_to_the_budget(monkeypatch):
    threads = budget()
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
    threads = budget(turn_wait=0.1)
    taken = threads.ordinary_turn()
    try:
        with pytest.raises(NoTurnFree) as refused:
            threads.ordinary_turn()
    finally:
        taken.release()

    assert refused.value.status_code == 503
    assert refused.value.headers["Retry-After"] == "1"
    assert "Retry-After" in refused.value.detail


@pytest.mark.django_db
def test_one_user_holds_at_most_the_per_user_waiting_slots():
    threads = budget(live=10, live_per_user=2)
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
    threads = budget(live=10, live_per_user=1)
    assert threads.take_live().claim_for(AnonymousUser())
    assert not threads.take_live().claim_for(AnonymousUser())
