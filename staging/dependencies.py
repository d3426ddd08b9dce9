"""The two servers every request may need, the database and the broker: which errors mean one
of them is unreachable (so the client should come back later, not report a bug), and a quick
question to the broker before work is created that it would have to carry."""

import contextlib
import functools
import logging
import sqlite3
import time

import redis
from django.conf import settings
from django.db import InterfaceError, connection
from django.db import OperationalError as DatabaseOperationalError
from kombu.exceptions import OperationalError as BrokerOperationalError

logger = logging.getLogger(__name__)

DATABASE = "database"
BROKER = "broker"


class BrokerUnavailable(Exception):
    """The broker did not answer a ping: work created now could not be handed out."""


def unreachable_dependency(exc: BaseException) -> str | None:
    """``"database"`` or ``"broker"`` when ``exc`` says that server cannot be reached (refused,
    cut, shutting down, restarting), else None. Django raises OperationalError for a connection
    that failed or broke and InterfaceError for one already closed under it."""
    if isinstance(exc, InterfaceError):
        return DATABASE
    if isinstance(exc, DatabaseOperationalError):
        # SQLite raises OperationalError for its own bugs' symptoms too (a syntax error, a
        # missing table): only a busy or unopenable file is an outage; the rest is a 500.
        if isinstance(exc.__cause__, sqlite3.OperationalError):
            message = str(exc).lower()
            return DATABASE if ("locked" in message or "unable to open" in message) else None
        return DATABASE
    if isinstance(
        exc, (BrokerUnavailable, BrokerOperationalError, redis.ConnectionError, redis.TimeoutError)
    ):
        return BROKER
    return None


def database_wait_until_reachable(*, timeout: float | None = None) -> bool:
    """Block until the database takes a connection again, for at most ``timeout`` seconds
    (DATABASE_OUTAGE_WAIT_SECONDS); True once it does. A worker that meets an outage waits
    here instead of failing its work, then carries on as if the database had never gone.

    A kept connection that broke is closed first, and one due a health check (CONN_HEALTH_CHECKS)
    gets it now rather than on its first query: a healthy connection costs no extra query."""
    if timeout is None:
        timeout = settings.DATABASE_OUTAGE_WAIT_SECONDS
    deadline = time.monotonic() + timeout
    waited = False
    while True:
        try:
            connection.close_if_unusable_or_obsolete()
            connection.close_if_health_check_failed()
            connection.ensure_connection()
        except (DatabaseOperationalError, InterfaceError) as exc:
            with contextlib.suppress(DatabaseOperationalError, InterfaceError):
                connection.close()
            if not waited:
                logger.warning("database unreachable (%s); waiting up to %ss", exc, timeout)
                waited = True
        else:
            if waited:
                logger.warning("database reachable again")
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(1)


def broker_redis_url() -> str | None:
    """The broker as a redis-py URL, or None when the broker is not Redis."""
    url = settings.CELERY_BROKER_URL
    if url.startswith("redis+socket://"):
        return "unix://" + url.removeprefix("redis+socket://")
    if url.startswith(("redis://", "rediss://", "unix://")):
        return url
    return None


@functools.cache
def _broker_client(url: str) -> redis.Redis:
    # One pool per process and URL: a ping reuses a connection, and redis-py reconnects by
    # itself once the broker is back.
    timeout = settings.BROKER_PING_TIMEOUT_SECONDS
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)


def broker_client() -> redis.Redis | None:
    """This process's client of the broker's Redis (None when the broker is not Redis); keys
    written through it carry no key prefix of their own."""
    url = broker_redis_url()
    return None if url is None else _broker_client(url)


def broker_ensure_reachable() -> None:
    """Raise BrokerUnavailable unless the broker answers a PING within
    BROKER_PING_TIMEOUT_SECONDS. Brokers other than Redis are not asked."""
    url = broker_redis_url()
    if url is None:
        return
    try:
        _broker_client(url).ping()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise BrokerUnavailable(f"the broker does not answer: {exc}") from exc
