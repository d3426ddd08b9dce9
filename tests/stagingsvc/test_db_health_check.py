"""The PostgreSQL engine's health check (stagingsvc.db.postgresql): a kept connection whose
socket is quiet costs no SELECT 1; one the server ended is checked, closed and replaced before
the next query, which then succeeds."""

import select

import psycopg
import pytest
from django.db import connection

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's engine"),
]


@pytest.fixture
def checks(monkeypatch):
    """The SELECT 1 checks made, and a kept connection due its health check (as at the start
    of a request)."""
    made = []
    is_usable = connection.is_usable

    def counted():
        made.append(1)
        return is_usable()

    monkeypatch.setattr(connection, "is_usable", counted)
    connection.ensure_connection()
    connection.health_check_enabled = True
    connection.health_check_done = False
    return made


def query_answers() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 41 + 1")
        return cursor.fetchone()[0]


def test_a_quiet_kept_connection_costs_no_select_1(checks):
    assert query_answers() == 42
    assert checks == []


def test_a_connection_the_server_ended_is_replaced_before_the_query(checks):
    ended_pid = connection.connection.info.backend_pid
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [ended_pid])
    # The ended backend's goodbye reaches the socket a moment later (a restart is long over
    # by the next request; a test is quicker than that).
    select.select([connection.connection.fileno()], [], [], 5)

    assert query_answers() == 42  # no error reached the caller

    assert checks == [1]
    assert connection.connection.info.backend_pid != ended_pid
