"""Seed 001's asynchronous task status calls on our jobs.

- ``peek``: the status and progress only, the cheapest call there is.
- ``task_status``: while the job runs, the status with ``Location`` (itself) and ``Retry-After``;
  once it has ended, its results (JSON, or CSV on ``Accept: text/csv``) with their URI in
  ``Location`` and ``Content-Location``.

While a job runs both are one indexed lookup of the status columns, and both answer 304 to an
``If-None-Match`` that still holds, so a poller transfers nothing while nothing changes."""

import uuid

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from staging.api.conditional import STATUS_CACHE_CONTROL, etag_for, precondition_response
from staging.api.job_output import (
    JOB_ID,
    ResultSerializer,
    StatusSerializer,
    poll_interval,
    result_response,
    results_uri,
    status_uri,
)
from staging.api.long_poll import PREFER, PREFERENCE_APPLIED, long_polled
from staging.api.permissions import RolePolicy
from staging.api.renderers import CSVRenderer
from staging.models import TERMINAL_STATUSES
from staging.selectors import (
    JOB_STATUS_FIELDS,
    RESULT_COLUMNS,
    job_get,
    job_status_error,
    job_status_row,
)

IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match",
    str,
    OpenApiParameter.HEADER,
    description="The ETag of an earlier answer: 304 with no body while it still holds.",
)
ETAG = OpenApiParameter(
    "ETag",
    str,
    OpenApiParameter.HEADER,
    description="Validator of this answer, for If-None-Match.",
    response=[200, 304],
)
NOT_FOUND = OpenApiResponse(description="No such job visible to the caller.")
NOT_MODIFIED = OpenApiResponse(description="Nothing changed since the ETag sent in If-None-Match.")


PROGRESS_FIELDS = ("files_total", "files_done", "files_failed", "bytes_total", "bytes_done")


def status_body(row: dict, error: str = "") -> dict:
    """``StatusSerializer`` of a status row, built directly: a serializer deep-copies its fields
    for every instance, which cost a tenth of a poll's CPU (the serializer stays the schema;
    tests hold the two equal)."""
    body = {"status": row["status"], "progress": {name: row[name] for name in PROGRESS_FIELDS}}
    if error:  # only a failed job says why
        body["error"] = error
    if row.get("waiting") and row["status"] not in TERMINAL_STATUSES:
        body["waiting"] = row["waiting"]  # only a job held back says why, while it waits
    return body


def _etag(call: str, job_id: str, row: dict, media_type: str = "") -> str:
    return etag_for(call, job_id, media_type, *(row[name] for name in JOB_STATUS_FIELDS))


class TaskStatusPeekView(APIView):
    """The job's status and progress only: the cheapest call, for frequent polling."""

    role_policy = "task_status"
    permission_classes = [RolePolicy]

    @extend_schema(
        parameters=[JOB_ID, IF_NONE_MATCH, PREFER, ETAG, PREFERENCE_APPLIED],
        responses={200: StatusSerializer, 304: NOT_MODIFIED, 404: NOT_FOUND},
    )
    def get(self, request, job_id: str):
        return long_polled(request, lambda: self._answer(request, job_id))

    def _answer(self, request, job_id: str):
        row = job_status_row(job_id=job_id, user=request.user)
        headers = {"ETag": _etag("peek", job_id, row), "Cache-Control": STATUS_CACHE_CONTROL}
        decided = precondition_response(request, headers)
        if decided is not None:
            return decided, row
        return Response(status_body(row, job_status_error(row)), headers=headers), row


class TaskStatusView(APIView):
    """While the job runs: its status, with Location (this URI) and Retry-After. Once it has
    ended: its results, JSON or CSV (Accept: text/csv), with their URI in Location."""

    role_policy = "task_status"
    permission_classes = [RolePolicy]
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(
        parameters=[
            JOB_ID,
            IF_NONE_MATCH,
            PREFER,
            ETAG,
            PREFERENCE_APPLIED,
            OpenApiParameter(
                "Location",
                OpenApiTypes.URI,
                OpenApiParameter.HEADER,
                response=[200, 304],
                description="While running: this status URI; once ended: the results URI.",
            ),
            OpenApiParameter(
                "Retry-After",
                int,
                OpenApiParameter.HEADER,
                response=[200, 304],
                description="While running: seconds to wait before polling again.",
            ),
        ],
        responses={
            (200, "application/json"): OpenApiResponse(
                PolymorphicProxySerializer(
                    component_name="TaskStatus",
                    serializers=[StatusSerializer, ResultSerializer],
                    resource_type_field_name=None,
                ),
                "While running: the status (StatusSerializer); once ended: the results.",
            ),
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR,
                "While running: the status as one CSV row; once ended: the results, a header "
                f"line ({', '.join(RESULT_COLUMNS)}) and one line per file.",
            ),
            304: NOT_MODIFIED,
            404: NOT_FOUND,
        },
    )
    def get(self, request, job_id: str):
        return long_polled(request, lambda: self._answer(request, job_id))

    def _answer(self, request, job_id: str):
        row = job_status_row(job_id=job_id, user=request.user)
        job_uuid = uuid.UUID(job_id)
        as_csv = request.accepted_renderer.format == "csv"
        headers = {
            "ETag": _etag("task_status", job_id, row, request.accepted_media_type),
            "Cache-Control": STATUS_CACHE_CONTROL,
        }
        if row["status"] not in TERMINAL_STATUSES:
            headers["Location"] = status_uri(request, job_uuid)
            headers["Retry-After"] = str(poll_interval())
            decided = precondition_response(request, headers)
            return decided or Response(status_body(row), headers=headers), row
        headers["Location"] = headers["Content-Location"] = results_uri(request, job_uuid)
        decided = precondition_response(request, headers)
        if decided is not None:
            return decided, row
        job = job_get(job_id=job_id, user=request.user)
        return result_response(job, as_csv=as_csv, headers=headers), row
