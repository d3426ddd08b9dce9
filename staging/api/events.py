"""``GET /api/v1/jobs/{id}/events``: a Server-Sent Events stream of one job's status and
progress, from its current state to its end.

Each event carries the job's status body (as peek answers it) and an ``id`` that names the
job's state (when it last changed, files handled, bytes done); a client that reconnects with
``Last-Event-ID`` gets only what changed since. A status change is sent as soon as the watcher
sees it (staging.live); progress-only events are at least PROGRESS_EVENT_GAP_SECONDS apart, the
latest state winning. The stream ends after the event of a terminal status; a reconnect after
that answers 204, which tells an EventSource to stop reconnecting. While nothing happens a
comment every KEEPALIVE_SECONDS keeps proxies from closing the connection. A stream open for
STREAM_MAX_SECONDS is closed after its last event (so no one holds a waiting slot for hours);
the EventSource reconnects with Last-Event-ID and misses nothing."""

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from staging.api.job_output import JOB_ID
from staging.api.permissions import RolePolicy
from staging.api.renderers import EventStreamRenderer
from staging.api.task_status import status_body
from staging.errors import BusyError, NotFoundError
from staging.live import NoTurnFree, job_watcher, release_database_connection, watched_columns
from staging.models import TERMINAL_STATUSES
from staging.selectors import job_status_error, job_status_row

logger = logging.getLogger(__name__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# How long an EventSource waits before reconnecting after the connection drops.
RECONNECT_MILLISECONDS = 2000


def event_id(row: dict) -> str:
    """Names the job's state: when it last changed (µs), files handled, bytes done. It grows
    as the job moves on; equal ids mean the client has seen this state."""
    changed = (row["updated_at"] - _EPOCH) // _MICROSECOND
    return f"{changed}.{row['files_done'] + row['files_failed']}.{row['bytes_done']}"


def _event(kind: str, identifier: str, body: dict) -> str:
    return f"id: {identifier}\nevent: {kind}\ndata: {json.dumps(body)}\n\n"


def job_events(*, job_id: str, user, row: dict, last_event_id: str, slot) -> Iterator[str]:
    """The stream's text (see _events); it ends early when no ordinary turn comes free for a
    read (the server is overloaded): the client reconnects after RECONNECT_MILLISECONDS with
    Last-Event-ID, and misses nothing."""
    try:
        yield from _events(
            job_id=job_id, user=user, row=row, last_event_id=last_event_id, slot=slot
        )
    except NoTurnFree:
        logger.warning("an event stream of job %s ended: no request thread came free", row["id"])


def _events(*, job_id: str, user, row: dict, last_event_id: str, slot) -> Iterator[str]:
    """The stream's text, from ``row`` (read by the view) until the job's terminal event, or
    until the stream is STREAM_MAX_SECONDS old (the client reconnects with Last-Event-ID and
    goes on where it was). Every read runs on an ordinary turn (``slot.database_turn``)."""
    live = settings.LIVE
    closes_at = time.monotonic() + live["STREAM_MAX_SECONDS"]
    seen_id = last_event_id
    # A resumed stream whose client saw the current state sends the next status as progress
    # when the status stays the same.
    sent_status = row["status"] if event_id(row) == last_event_id else None
    last_sent = float("-inf")
    yield f"retry: {RECONNECT_MILLISECONDS}\n\n"  # also sends the headers at once
    while True:
        current_id = event_id(row)
        if current_id != seen_id:
            kind = "progress" if row["status"] == sent_status else "status"
            hold = last_sent + live["PROGRESS_EVENT_GAP_SECONDS"] - time.monotonic()
            if kind == "progress" and hold > 0:
                # Too soon after the last event: wait out the gap (a status change ends the
                # wait), then send the state as it is by then.
                release_database_connection()
                job_watcher.wait_for_change(
                    job_id=row["id"], seen={"status": row["status"]}, timeout=hold
                )
                row = _read_again(job_id, user, slot)
                if row is None:
                    return
                continue
            with slot.database_turn():
                body = status_body(row, job_status_error(row))
            yield _event(kind, current_id, body)
            seen_id, sent_status, last_sent = current_id, row["status"], time.monotonic()
        if row["status"] in TERMINAL_STATUSES:
            return
        left = closes_at - time.monotonic()
        if left <= 0:
            return  # long enough: the client reconnects with the id of the last event
        release_database_connection()
        if not job_watcher.wait_for_change(
            job_id=row["id"],
            seen=watched_columns(row),
            timeout=min(live["KEEPALIVE_SECONDS"], left),
        ):
            if closes_at > time.monotonic():
                yield ": keepalive\n\n"
            continue
        row = _read_again(job_id, user, slot)
        if row is None:
            return


def _read_again(job_id: str, user, slot) -> dict | None:
    try:
        with slot.database_turn():
            return job_status_row(job_id=job_id, user=user)
    except NotFoundError:
        return None  # deleted meanwhile (purged): the stream ends


# One event of the stream, as OpenAPI describes text/event-stream: its fields.
EVENT_SCHEMA = inline_serializer(
    "JobEvent",
    {
        "id": serializers.CharField(help_text="Names the job's state; send as Last-Event-ID."),
        "event": serializers.ChoiceField(
            choices=["status", "progress"],
            help_text="status: the status changed (or the first event); progress: only counts.",
        ),
        "data": serializers.CharField(help_text="The peek body (StatusSerializer) as JSON."),
        "retry": serializers.IntegerField(
            required=False, help_text="Milliseconds to wait before reconnecting."
        ),
    },
)


class JobEventsView(APIView):
    """The job's status and progress as Server-Sent Events, until it ends."""

    role_policy = "jobs_read"
    permission_classes = [RolePolicy]
    renderer_classes = [EventStreamRenderer, JSONRenderer]

    @extend_schema(
        operation_id="jobs_events",
        parameters=[
            JOB_ID,
            OpenApiParameter(
                "Last-Event-ID",
                str,
                OpenApiParameter.HEADER,
                description="The id of the last event received: the stream resumes after it.",
            ),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                EVENT_SCHEMA,
                "Events `status` (the status changed) and `progress` (only counts changed), "
                "each with an id and the peek body as data; `: keepalive` comments while "
                "nothing happens; the stream ends after the terminal status.",
            ),
            204: OpenApiResponse(description="Last-Event-ID names the job's final event."),
            404: OpenApiResponse(description="No such job visible to the caller."),
            503: OpenApiResponse(
                description="No room for another stream now (every slot taken, or the caller "
                "holds LIVE_CONNECTIONS_PER_USER): see Retry-After."
            ),
        },
    )
    def get(self, request, job_id: str):
        row = job_status_row(job_id=job_id, user=request.user)
        last_event_id = request.headers.get("Last-Event-ID", "")
        if row["status"] in TERMINAL_STATUSES and last_event_id == event_id(row):
            return HttpResponse(status=204)
        slot = getattr(request, "live_slot", None)
        if slot is None:
            raise BusyError(
                "Every event stream slot of this server is taken; try again after Retry-After "
                "seconds, or poll the status with Prefer: wait=N.",
                headers={"Retry-After": str(settings.STAGING["POLL_INTERVAL_SECONDS"])},
            )
        if not slot.claim_for(request.user):
            raise BusyError(
                f"You have {settings.LIVE['CONNECTIONS_PER_USER']} event streams or waiting "
                "status calls open on this server already (LIVE_CONNECTIONS_PER_USER); close "
                "one, try again after Retry-After seconds, or poll the status with "
                "Prefer: wait=N.",
                headers={"Retry-After": str(settings.STAGING["POLL_INTERVAL_SECONDS"])},
            )
        stream = job_events(
            job_id=job_id, user=request.user, row=row, last_event_id=last_event_id, slot=slot
        )
        response = StreamingHttpResponse(stream, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        # nginx and others buffer responses unless told not to: events must go out at once.
        response["X-Accel-Buffering"] = "no"
        return response
