"""The thread budget of a web process (staging.live): ordinary requests take turns that lend
their own database connections, so however many threads serve them, only as many connections
as turns are kept; waiting slots are few and never block."""

import threading

import pytest
from django.db import connection, connections

from staging.live import ThreadBudget

pytestmark = pytest.mark.django_db(transaction=True)


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
    budget = ThreadBudget(ordinary=1, live=0)

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
    budget = ThreadBudget(ordinary=1, live=2)

    first, second = budget.take_live(), budget.take_live()
    assert first is not None and second is not None
    assert budget.take_live() is None

    first.release()
    first.release()  # twice: still one slot back
    third = budget.take_live()
    assert third is not None
    assert budget.take_live() is None
