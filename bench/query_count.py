"""The SQL statements a block of code sends, whichever connection sends them.

Counted at Django's cursor rather than with a CaptureQueriesContext on this thread's
connection: outside a transaction the web's thread budget (staging.live) lends each request a
connection of its own, whose statements the caller's connection never sees."""

import time
from contextlib import contextmanager
from dataclasses import dataclass
from unittest import mock

from django.db.backends.utils import CursorWrapper


@dataclass
class Sent:
    sql: str
    seconds: float


@contextmanager
def statements_sent():
    """Yields the list that collects each statement (with its time) sent inside the block."""
    sent: list[Sent] = []
    execute = CursorWrapper._execute_with_wrappers

    def timed(cursor, sql, *args, **kwargs):
        started = time.perf_counter()
        try:
            return execute(cursor, sql, *args, **kwargs)
        finally:
            sent.append(Sent(sql, time.perf_counter() - started))

    with mock.patch.object(CursorWrapper, "_execute_with_wrappers", timed):
        yield sent
