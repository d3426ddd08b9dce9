"""API v1 jobs: submit (202 + a status monitor, RFC 9110 §15.3.3), list, detail, per-file items,
results, cancel, retry and release. The job's sub-jobs are in staging.api.subjobs."""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import serializers, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from staging.api.fields import (
    DeadlineField,
    IsoDurationField,
    StrictStringField,
    iso_duration_text,
    validated,
)
from staging.api.job_output import (
    JOB_ID,
    LOCATION,
    RETRY_AFTER,
    ItemSerializer,
    JobDetailSerializer,
    JobSummarySerializer,
    ResultSerializer,
    StatusField,
    SubmittedJobSerializer,
    poll_interval,
    result_response,
    status_uri,
)
from staging.api.pagination import ItemCursorPagination, JobCursorPagination, PaginatedView
from staging.api.parsers import NDJSON, JSONParser, NDJSONParser, body_drained
from staging.api.permissions import RolePolicy
from staging.api.renderers import CSVRenderer
from staging.api.throttling import SubmitRateThrottle, UserRateThrottle
from staging.api.webhooks import api_base
from staging.errors import ConflictError, NotFoundError, ServiceError
from staging.models import DEFAULT_PRIORITY, TERMINAL_STATUSES, File, Job
from staging.selectors import (
    RESULT_COLUMNS,
    job_error_text,
    job_get,
    job_items,
    job_progress,
    job_subjob_counts,
    jobs_list,
    store_get,
)
from staging.services.job_requests import (
    JobRequest,
    StreamedJobRequest,
    job_cancel_requested,
    job_release_requested,
    job_submit,
    job_submit_streamed,
    request_fingerprint,
)
from staging.services.jobs import job_retry

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    description="Any unique string (at most 128 printable characters): sending the same request "
    "again with the same key returns the first job instead of creating another.",
)


def _max_files() -> int:
    return settings.STAGING["MAX_FILES_PER_REQUEST"]


def _accepted(request, job: Job, *, code: int = status.HTTP_202_ACCEPTED, **headers) -> Response:
    body = SubmittedJobSerializer(job, context={"request": request}).data
    return Response(
        body,
        status=code,
        headers={"Location": status_uri(request, job.uuid), **headers},
    )


def _lifetime_bounded(lifetime):
    longest = settings.STAGING["MAX_LIFETIME"]
    if lifetime > longest:
        raise serializers.ValidationError(f"At most {longest.days} days.")
    return lifetime


def _idempotency_key(request) -> str:
    key = request.headers.get("Idempotency-Key", "")
    if len(key) > 128 or not key.isprintable() or (key and not key.strip()):
        raise ServiceError(
            "Idempotency-Key must be 1 to 128 printable characters", field="Idempotency-Key"
        )
    return key


def _store_named(slug: str | None):
    try:
        return store_get(slug=slug)
    except NotFoundError as exc:
        raise ServiceError(exc.detail, field="store") from exc


class CallbackSerializer(serializers.Serializer):
    url = serializers.URLField(
        max_length=2000, help_text="An http(s) URL whose host resolves to public addresses."
    )


class StreamedQuerySerializer(serializers.Serializer):
    """The query parameters of a staging request whose files are the body: an NDJSON body (one
    id or path a line, as a JSON string) or a bare JSON array of them."""

    task = StrictStringField(
        default="stage",
        max_length=64,
        help_text="stage: a body of file names only stages files.",
    )
    store = StrictStringField(
        required=False, max_length=64, help_text="The store (storeID); default the primary."
    )
    by = serializers.ChoiceField(
        choices=["ids", "paths"],
        default="ids",
        help_text="Whether the body's names are catalogue ids or archive paths.",
    )
    lifetime = IsoDurationField(
        required=False, help_text="How long the staged copies stay (ISO 8601, e.g. P7D)."
    )
    verify = serializers.BooleanField(
        default=False, help_text="Check each copy's checksum against the catalogue's."
    )
    priority = serializers.IntegerField(
        min_value=1,
        max_value=5,
        default=DEFAULT_PRIORITY,
        help_text="1 (lowest) to 5 (highest), default 3, as in a JSON object body.",
    )
    deadline = DeadlineField(required=False)

    def validate_task(self, task):
        if task != "stage":
            raise serializers.ValidationError(
                "A body of file names (NDJSON or a JSON array) stages files; other tasks take "
                "a JSON object with their parameters."
            )
        return task

    def validate_lifetime(self, lifetime):
        return _lifetime_bounded(lifetime)


class JobListView(PaginatedView):
    """The jobs the caller may see, and submitting new ones."""

    role_policy = {"GET": "jobs_read", "POST": "jobs_submit"}
    permission_classes = [RolePolicy]
    throttle_classes = [UserRateThrottle, SubmitRateThrottle]
    pagination_class = JobCursorPagination
    parser_classes = [JSONParser, NDJSONParser]

    class FilterSerializer(serializers.Serializer):
        status = StatusField(required=False, help_text="Only jobs in this status.")
        task = serializers.CharField(required=False, max_length=64, help_text="Only this task.")
        store = serializers.CharField(required=False, max_length=64, help_text="Only this store.")
        created_after = serializers.DateTimeField(
            required=False, help_text="Only jobs created at or after this time (ISO 8601)."
        )
        created_before = serializers.DateTimeField(
            required=False, help_text="Only jobs created before this time (ISO 8601)."
        )

    class InputSerializer(serializers.Serializer):
        task = StrictStringField(
            default="stage",
            max_length=64,
            help_text="The catalogue task to run (GET /api/v1/tasks/ lists them with their "
            "parameters); stage when absent, as this API is mostly asked to stage files.",
        )
        store = StrictStringField(
            required=False, max_length=64, help_text="The store (storeID); default the primary."
        )
        ids = serializers.ListField(
            child=StrictStringField(max_length=64, help_text="A catalogue file id."),
            required=False,
            allow_empty=False,
            help_text="Catalogue ids of the files (give ids or paths); a parameter of the task, "
            "sent beside the others for short.",
        )
        paths = serializers.ListField(
            child=StrictStringField(max_length=1024, help_text="A path in the archive."),
            required=False,
            allow_empty=False,
            help_text="Paths relative to the store's archive root, no leading / and no .. "
            "(give ids or paths); files no scan has indexed yet are catalogued now.",
        )
        parameters = serializers.DictField(
            required=False,
            default=dict,
            help_text="The task's other parameters, as GET /api/v1/tasks/ describes them.",
        )
        lifetime = IsoDurationField(
            required=False,
            help_text="How long the staged copies stay (an ISO 8601 duration such as P7D or "
            "PT12H); default from the settings.",
        )
        priority = serializers.IntegerField(
            min_value=1,
            max_value=5,
            default=DEFAULT_PRIORITY,
            help_text="1 (lowest) to 5 (highest), default 3: higher priorities are handed to "
            "workers first; within one, owners are served in turn.",
        )
        deadline = DeadlineField(required=False)

        callback = CallbackSerializer(
            required=False,
            help_text="A webhook for this job only: its events are POSTed to url, signed with "
            "a secret the answer shows once (docs/api.md#webhooks).",
        )

        def validate_lifetime(self, lifetime):
            return _lifetime_bounded(lifetime)

        def _bounded(self, values: list[str], name: str) -> list[str]:
            if len(values) > _max_files():
                raise serializers.ValidationError(
                    f"At most {_max_files()} {name} per request; this one has {len(values)}."
                )
            return values

        def validate_ids(self, ids):
            return self._bounded(ids, "ids")

        def validate_paths(self, paths):
            return self._bounded(paths, "paths")

    @extend_schema(
        description="The jobs the caller may see, newest first, cursor-paginated.",
        parameters=[FilterSerializer],
        responses={
            200: JobSummarySerializer(many=True),
            404: OpenApiResponse(description="No such store, or an invalid cursor."),
        },
    )
    def get(self, request):
        filters = validated(self.FilterSerializer, request.query_params)
        if "store" in filters:
            filters["store"] = store_get(slug=filters["store"])
        return self.paginated(jobs_list(user=request.user, **filters), JobSummarySerializer)

    @extend_schema(
        description="Submit a job: any task of the catalogue (stage when task is absent), with "
        "the task's parameters; ids, paths and lifetime may sit beside them. 202 with the "
        "job's status URI in Location. The same Idempotency-Key and body again return the same "
        "job. Paths are relative to the archive root (no leading /, no ..); files no scan has "
        "indexed yet are catalogued.",
        request={
            "application/json": InputSerializer,
            # One id or path a line; task, store, by, lifetime, verify, priority, deadline in
            # the query.
            NDJSON: OpenApiTypes.STR,
        },
        examples=[
            OpenApiExample(
                "by paths",
                value={"task": "stage", "paths": ["run1/reads.fastq"], "lifetime": "P7D"},
                request_only=True,
            ),
            OpenApiExample(
                "by catalogue ids",
                value={"ids": [File.id_for("primary", "run1/reads.fastq")]},
                request_only=True,
            ),
        ],
        parameters=[IDEMPOTENCY_KEY, LOCATION, RETRY_AFTER],
        responses={
            202: OpenApiResponse(SubmittedJobSerializer, "Accepted: poll the Location."),
            404: OpenApiResponse(
                description="Ids or paths that name no file: the first 20 in unknown_ids or "
                "unknown_paths, how many in unknown_ids_count or unknown_paths_count."
            ),
            422: OpenApiResponse(description="The Idempotency-Key was used with another body."),
        },
    )
    def post(self, request):
        key = _idempotency_key(request)
        body = request.data
        if isinstance(body, list) or request.content_type.startswith(NDJSON):
            return self._post_streamed(request, body, key)
        data = validated(self.InputSerializer, body)
        job, created = job_submit(
            owner=request.user,
            request=JobRequest(
                task=data["task"],
                store=_store_named(data.get("store")),
                parameters=data["parameters"],
                ids=data.get("ids"),
                paths=data.get("paths"),
                lifetime=iso_duration_text(data["lifetime"]) if "lifetime" in data else None,
                priority=data["priority"],
                deadline=data.get("deadline"),
            ),
            idempotency_key=key,
            fingerprint=request_fingerprint(body),
            callback_url=data["callback"]["url"] if "callback" in data else "",
            api_base=api_base(request),
        )
        return self._submitted(request, job, created, with_callback="callback" in data)

    def _post_streamed(self, request, body, key: str) -> Response:
        """A staging request whose body is the files: NDJSON, read as it comes, or a JSON
        array; the other parameters are in the query string."""
        try:
            query = validated(StreamedQuerySerializer, request.query_params)
            if isinstance(body, list):
                entries = ((f"[{n}]", value) for n, value in enumerate(body))
            else:
                entries = body
            job, created = job_submit_streamed(
                owner=request.user,
                request=StreamedJobRequest(
                    store=_store_named(query.get("store")),
                    by=query["by"],
                    entries=entries,
                    lifetime=query.get("lifetime"),
                    verify=query["verify"],
                    priority=query["priority"],
                    deadline=query.get("deadline"),
                ),
                idempotency_key=key,
                described=request_fingerprint({k: str(v) for k, v in query.items()}),
            )
        except Exception:
            body_drained(request)
            raise
        return self._submitted(request, job, created)

    def _submitted(
        self, request, job: Job, created: bool, *, with_callback: bool = False
    ) -> Response:
        headers = {"Retry-After": str(poll_interval())}
        if not created:
            headers["Idempotent-Replayed"] = "true"
        response = _accepted(request, job, **headers)
        if created and with_callback:
            # The one time this secret is shown: a replay of the request does not repeat it.
            response.data["callback"] = {"url": job.callback.url, "secret": job.callback.secret}
        return response


class JobDetailView(APIView):
    """Everything about one job: progress, outcome, and its sub-jobs by status."""

    role_policy = "jobs_read"
    permission_classes = [RolePolicy]

    @extend_schema(
        parameters=[JOB_ID],
        responses={
            200: JobDetailSerializer,
            404: OpenApiResponse(description="No such job visible to the caller."),
        },
    )
    def get(self, request, job_id: str):
        job = job_get(job_id=job_id, user=request.user)
        counts = job_subjob_counts(job=job)
        job.subjob_counts = {"total": sum(counts.values()), "by_status": counts}
        job.progress_now = job_progress(job=job)
        job.error_text = job_error_text(job=job)
        return Response(JobDetailSerializer(job, context={"request": request}).data)


class JobItemsView(PaginatedView):
    """The job's files and the state of each, cursor-paginated."""

    role_policy = "jobs_read"
    permission_classes = [RolePolicy]
    pagination_class = ItemCursorPagination

    class FilterSerializer(serializers.Serializer):
        status = StatusField(required=False, help_text="Only files in this status.")
        subjob = serializers.IntegerField(
            required=False, min_value=1, help_text="Only files of this sub-job."
        )

    @extend_schema(
        parameters=[JOB_ID, FilterSerializer],
        responses={
            200: ItemSerializer(many=True),
            404: OpenApiResponse(description="No such job, or an invalid cursor."),
        },
    )
    def get(self, request, job_id: str):
        filters = validated(self.FilterSerializer, request.query_params)
        job = job_get(job_id=job_id, user=request.user)
        return self.paginated(job_items(job=job, **filters), ItemSerializer)


def _result_not_ready(job: Job, what: str) -> ConflictError:
    return ConflictError(
        f"{what} is {job.status}; its result is ready once it has ended",
        headers={"Retry-After": str(poll_interval())},
    )


class JobResultView(APIView):
    """The job's results once it has ended: one row per file, JSON or CSV (Accept: text/csv),
    streamed."""

    role_policy = "jobs_read"
    permission_classes = [RolePolicy]
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(
        parameters=[JOB_ID, RETRY_AFTER],
        responses={
            (200, "application/json"): ResultSerializer,
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR, f"A header line ({', '.join(RESULT_COLUMNS)}), one line per file."
            ),
            404: OpenApiResponse(description="No such job visible to the caller."),
            409: OpenApiResponse(description="The job has not ended yet (see Retry-After)."),
        },
    )
    def get(self, request, job_id: str):
        job = job_get(job_id=job_id, user=request.user)
        if job.status not in TERMINAL_STATUSES:
            raise _result_not_ready(job, f"job {job.uuid}")
        return result_response(job, as_csv=request.accepted_renderer.format == "csv")


class JobCancelView(APIView):
    """Cancel the job: queued files are dropped, running ones stop at the next chunk."""

    role_policy = "jobs_control"
    permission_classes = [RolePolicy]

    @extend_schema(
        request=None,
        parameters=[JOB_ID, LOCATION, RETRY_AFTER],
        responses={
            200: OpenApiResponse(SubmittedJobSerializer, "Already cancelled."),
            202: OpenApiResponse(SubmittedJobSerializer, "Cancelling: running files stop soon."),
            404: OpenApiResponse(description="No such job visible to the caller."),
            409: OpenApiResponse(description="The job has already ended otherwise."),
        },
    )
    def post(self, request, job_id: str):
        job = job_cancel_requested(job=job_get(job_id=job_id, user=request.user), by=request.user)
        if job.status in TERMINAL_STATUSES:
            return _accepted(request, job, code=status.HTTP_200_OK)
        return _accepted(request, job, **{"Retry-After": str(poll_interval())})


class JobRetryView(APIView):
    """Run the failed files of an ended job again, as new sub-jobs."""

    role_policy = "jobs_control"
    permission_classes = [RolePolicy]

    @extend_schema(
        request=None,
        parameters=[JOB_ID, LOCATION, RETRY_AFTER],
        responses={
            202: OpenApiResponse(SubmittedJobSerializer, "The failed files run again."),
            404: OpenApiResponse(description="No such job visible to the caller."),
            409: OpenApiResponse(description="The job is still active or has no failed file."),
        },
    )
    def post(self, request, job_id: str):
        job = job_retry(job=job_get(job_id=job_id, user=request.user))
        return _accepted(request, job, **{"Retry-After": str(poll_interval())})


class JobReleaseView(APIView):
    """Release the job's staged copies (all, or some paths): once no job holds a copy, the
    sweeper deletes it (a running job's copies only after it ends)."""

    role_policy = "jobs_control"
    permission_classes = [RolePolicy]

    class InputSerializer(serializers.Serializer):
        paths = serializers.ListField(
            child=StrictStringField(max_length=1024, help_text="A path of the job."),
            required=False,
            allow_empty=False,
            help_text="Release only these files of the job; all of them when absent.",
        )

        def validate_paths(self, paths):
            if len(paths) > _max_files():
                raise serializers.ValidationError(f"At most {_max_files()} paths per request.")
            return list(dict.fromkeys(paths))

    class OutputSerializer(serializers.Serializer):
        jobId = serializers.UUIDField(source="uuid", help_text="The id of the job.")
        released = serializers.IntegerField(help_text="Pins released by this call.")

    @extend_schema(
        request=InputSerializer,
        parameters=[JOB_ID],
        responses={
            200: OutputSerializer,
            404: OpenApiResponse(description="No such job visible to the caller."),
        },
    )
    def post(self, request, job_id: str):
        data = validated(self.InputSerializer, request.data or {})
        job = job_get(job_id=job_id, user=request.user)
        job.released = job_release_requested(job=job, paths=data.get("paths"))
        return Response(self.OutputSerializer(job).data)
