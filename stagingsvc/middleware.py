"""Requests refused before any view sees them: a NUL byte in the URL, and work the broker could
not carry before any of it is written; and the thread budget that keeps waiting requests from
starving ordinary ones."""

from django.urls import Resolver404, resolve

from staging.api.long_poll import may_wait
from staging.dependencies import BROKER, BrokerUnavailable, broker_ensure_reachable
from staging.live import NoTurnFree, release_database_connection, thread_budget
from stagingsvc.exceptions import nul_byte_problem, service_error_response, unavailable_response

# The routes whose POST creates sub-jobs for the broker to hand out: new jobs in every dialect,
# and retries. Cancel, release and delete change only rows, so they go on working.
PUBLISHING_ROUTES = frozenset(
    {
        "dts-staging",
        "job-list",
        "job-retry",
        "tape-stage",
        "durastore-task",
        "task-perform",
    }
)


class RejectNulBytesMiddleware:
    """A NUL byte in the URL (``?storeID=a%00b``) is the client's error: answer 400 naming the
    parameter, rather than let it reach PostgreSQL, which stores no NUL in text and would fail
    the query with a 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path:
            return nul_byte_problem(request, "the URL path")
        for name, values in request.GET.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                return nul_byte_problem(request, f"the query parameter {name!r}", field=name)
        return self.get_response(request)


class BrokerRequiredMiddleware:
    """A submission while the broker is away answers 503 and creates no job, so a client that
    tries again later does not leave a twin behind. (Should the broker go away after this check
    and before the publish, the job is kept and the reconciler publishes it once the broker is
    back: the database, not the broker, is the record of what must run.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method == "POST" and _route(request.path_info) in PUBLISHING_ROUTES:
            try:
                broker_ensure_reachable()
            except BrokerUnavailable:
                return unavailable_response(request, BROKER)
        return self.get_response(request)


def _route(path: str) -> str | None:
    try:
        return resolve(path).url_name
    except Resolver404:
        return None


# The routes where a request may wait for a job to change (staging.api.long_poll, events).
WAITING_ROUTES = frozenset({"task-status-peek", "task-status", "dts-staging", "job-events"})


class ThreadBudgetMiddleware:
    """Keeps waiting requests (long polls, event streams) from starving ordinary ones
    (staging.live.ThreadBudget): a request that may wait takes a waiting slot if one is free
    and holds it until its answer is sent (an event stream: until it ends); every other
    request, and one that found no free slot, runs in one of the ordinary turns."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        budget = thread_budget()
        slot = budget.take_live() if _may_wait(request) else None
        request.live_slot = slot
        try:
            if slot is not None:
                slot.take_turn()  # its reads run on a turn too; it lets it go while it waits
                held = slot
            else:
                held = budget.ordinary_turn()
        except NoTurnFree as exc:
            if slot is not None:
                slot.release()
            return service_error_response(request, exc)
        try:
            response = self.get_response(request)
        except BaseException:
            held.release()
            raise
        if response.streaming and slot is not None:  # an event stream
            slot.drop_turn()  # it takes a turn for each read (LiveSlot.database_turn)
            response.streaming_content = _after_last_chunk(response.streaming_content, held.release)
            return response
        held.release()
        if response.streaming:
            # Results read from the database as they are sent: on a connection of the thread's
            # own (the turn's went back with the turn), closed once they are sent, so no thread
            # keeps one. The turn is not held while a slow client reads a large result.
            response.streaming_content = _after_last_chunk(
                response.streaming_content, release_database_connection
            )
        return response


def _may_wait(request) -> bool:
    if request.method != "GET":
        return False
    if not request.path_info.endswith("/events") and not may_wait(request):
        return False
    return _route(request.path_info) in WAITING_ROUTES


def _after_last_chunk(chunks, then):
    """The response's chunks, then ``then()`` after the last one (or when the client hangs
    up)."""
    try:
        yield from chunks
    finally:
        then()
