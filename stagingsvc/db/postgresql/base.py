"""PostgreSQL as django-prometheus wraps it (queries and errors counted), with a health check
that costs no round trip while the connection is quiet.

Django's CONN_HEALTH_CHECKS sends ``SELECT 1`` before the first query of every request or task
on a kept connection: on a status poll, a second round trip as long as the poll's own query,
and under load half of its time. A connection the server ended (a restart, a terminated
backend, an idle timeout) has something to read on its socket (the server's goodbye, or the end
of the stream), so a quiet socket is healthy as far as a query could tell; only a socket with
something to read is checked with ``SELECT 1``, and closed if that fails. A connection cut off
without a word from the server (a network cut) looks quiet to both checks alike: there the
query fails after DATABASE_TCP_USER_TIMEOUT_MS, as ``SELECT 1`` would have."""

import select

import psycopg
from django_prometheus.db.backends.postgresql import base


def _socket_quiet(connection) -> bool:
    """Nothing to read on the connection's socket (and it still has one)."""
    try:
        readable, _, _ = select.select([connection.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        # A closed connection has no socket any more: not quiet, let SELECT 1 decide.
        return False
    return not readable


class DatabaseWrapper(base.DatabaseWrapper):
    def close_if_health_check_failed(self):
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and not self.pool
            and _socket_quiet(self.connection)
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()
