"""Long polling of the status calls (peek, task_status, DTS staging status): ``Prefer: wait=N``
(RFC 7240) with an ``If-None-Match`` that still holds makes the call wait until its answer
would differ, or N seconds, instead of answering 304 at once. The wait is one request, so it
counts once against the caller's rate limit; it holds one of the process's waiting slots
(staging.live), and without a free one, or when the caller holds LIVE_CONNECTIONS_PER_USER
already, the call answers at once as before."""

import re
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter

from staging.live import job_watcher, watched_columns

PREFER = OpenApiParameter(
    "Prefer",
    str,
    OpenApiParameter.HEADER,
    description="wait=N (seconds, at most 60) with If-None-Match: wait until the answer "
    "differs or N seconds pass (then 304) instead of answering 304 at once.",
)
PREFERENCE_APPLIED = OpenApiParameter(
    "Preference-Applied",
    str,
    OpenApiParameter.HEADER,
    description="wait=N when the call waited as Prefer asked.",
    response=[200, 304],
)
_DELTA_SECONDS = re.compile(r"[0-9]{1,9}")


def preferred_wait(request) -> int | None:
    """The seconds of a ``Prefer: wait=N`` preference, shortened to MAX_WAIT_SECONDS; None when
    there is none, or when it is malformed (RFC 7240 §2: a preference the server does not
    understand is ignored, never an error). The first ``wait`` counts, as §2 asks."""
    for preference in request.headers.get("Prefer", "").split(","):
        name, _, value = preference.split(";", 1)[0].partition("=")
        if name.strip().lower() != "wait":
            continue
        value = value.strip().strip('"')
        if not _DELTA_SECONDS.fullmatch(value) or int(value) == 0:
            return None
        return min(int(value), settings.LIVE["MAX_WAIT_SECONDS"])
    return None


def may_wait(request) -> bool:
    """Whether the request asks to wait: a wait preference and a validator to wait on."""
    return "If-None-Match" in request.headers and preferred_wait(request) is not None


def long_polled(request, answer: Callable[[], tuple[HttpResponse, dict]]) -> HttpResponse:
    """``answer()`` gives a status call's response and the status row it was made from. While
    that response is a 304 and the caller prefers to wait (with a waiting slot), wait for the
    job to change and answer again, until it is not a 304 or the wait is over."""
    response, row = answer()
    wait = preferred_wait(request)
    slot = getattr(request, "live_slot", None)
    if wait is None or not may_wait(request) or slot is None:
        return response
    if not slot.claim_for(request.user):
        return response  # the caller waits in LIVE_CONNECTIONS_PER_USER calls already
    deadline = time.monotonic() + wait
    while response.status_code == 304 and (remaining := deadline - time.monotonic()) > 0:
        # No turn and no connection while waiting; the read again runs on a turn, so the
        # waiters woken at once by one change queue for the turns rather than each opening
        # a connection of its own.
        with slot.off_turn():
            changed = job_watcher.wait_for_change(
                job_id=row["id"], seen=watched_columns(row), timeout=remaining
            )
        if changed:
            response, row = answer()
    response["Preference-Applied"] = f"wait={wait}"
    return response
