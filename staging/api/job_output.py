"""How jobs, sub-jobs and results look on the wire in API v1, shared by the jobs, task status and
DMI views. Status words are the canonical ones (staging.models.JobStatus) everywhere here: the
API v1 and seed-002 dialects need no mapping table."""

from django.conf import settings
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema_field
from rest_framework import serializers

from staging.api.fields import IsoDurationField
from staging.api.result_streams import results_response
from staging.models import TERMINAL_STATUSES, Job, JobStatus, SubJob

# Parameters and headers the OpenAPI description shares between the job views.
JOB_ID = OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Job id.")
SUBJOB_ID = OpenApiParameter(
    "subjob_id",
    OpenApiTypes.INT,
    OpenApiParameter.PATH,
    description="Sub-job position, from 1.",
    examples=[OpenApiExample("the first sub-job", value=1)],
)
LOCATION = OpenApiParameter(
    "Location",
    OpenApiTypes.URI,
    OpenApiParameter.HEADER,
    description="The job's status URI (task_status).",
    response=[200, 202],
)
RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    int,
    OpenApiParameter.HEADER,
    description="Seconds to wait before polling again.",
    response=[202, 409],
)


def poll_interval() -> int:
    """Seconds a client should wait before polling again (Retry-After)."""
    return settings.STAGING["POLL_INTERVAL_SECONDS"]


def job_uri(request, name: str, job_uuid, **kwargs) -> str:
    return request.build_absolute_uri(reverse(name, kwargs={"job_id": str(job_uuid), **kwargs}))


def status_uri(request, job_uuid) -> str:
    return job_uri(request, "task-status", job_uuid)


def results_uri(request, job_uuid) -> str:
    return job_uri(request, "job-result", job_uuid)


def subjob_result_uri(request, job_uuid, sequence: int) -> str:
    """Where a sub-job's outcome is: its items, one state per file."""
    return f"{job_uri(request, 'job-items', job_uuid)}?subjob={sequence}"


@extend_schema_field(OpenApiTypes.URI)
class JobUriField(serializers.Field):
    """The absolute URI of one of the job's resources (the URL pattern ``view_name``)."""

    def __init__(self, view_name: str, **kwargs):
        self.view_name = view_name
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, job):
        return job_uri(self.context["request"], self.view_name, job.uuid)


STATUS_HELP = "Canonical status: " + ", ".join(JobStatus.values) + "."


class StatusField(serializers.ChoiceField):
    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", STATUS_HELP)
        super().__init__(choices=JobStatus.choices, **kwargs)


class ProgressSerializer(serializers.Serializer):
    files_total = serializers.IntegerField(help_text="Files in the job.")
    files_done = serializers.IntegerField(help_text="Files finished so far.")
    files_failed = serializers.IntegerField(help_text="Files that failed (known once it ends).")
    bytes_total = serializers.IntegerField(help_text="Bytes in the job.")
    bytes_done = serializers.IntegerField(help_text="Bytes copied so far.")


class DetailedProgressSerializer(ProgressSerializer):
    bytes_per_second = serializers.FloatField(
        help_text="Current copy rate over the running sub-jobs (0 when nothing runs)."
    )
    eta_seconds = serializers.FloatField(
        allow_null=True, help_text="Seconds left at the current rate, or null when unknown."
    )


class StatusSerializer(serializers.Serializer):
    """The answer of peek, and of task_status while the job runs."""

    status = StatusField()
    progress = ProgressSerializer(source="*", help_text="How far the job got.")
    error = serializers.CharField(
        required=False,
        help_text="Only when the job is FAILED or PARTIALLY_FAILED: why, its own error, else "
        "how many files failed by reason with the first few store paths.",
    )
    waiting = serializers.CharField(
        required=False,
        help_text="Only while something other than its turn holds the job's work back: why "
        "(staging area full).",
    )

    def to_representation(self, instance):
        data = super().to_representation(instance)
        # Only a job held back says why, and only while it waits.
        if not data.get("waiting") or data["status"] in TERMINAL_STATUSES:
            data.pop("waiting", None)
        return data


class SubmittedJobSerializer(serializers.Serializer):
    """Seed 002's job description: every field is mandatory."""

    jobId = serializers.UUIDField(source="uuid", help_text="The id of the job.")
    status = StatusField()
    statusuri = JobUriField("task-status", help_text="Where to poll the job's status.")
    resultsuri = JobUriField("job-result", help_text="Where the job's results will be.")


class JobSummarySerializer(SubmittedJobSerializer):
    task = serializers.CharField(help_text="The task the job runs (stage).")
    store = serializers.CharField(source="store.slug", help_text="The store (storeID).")
    owner = serializers.CharField(source="owner.username", help_text="Who asked for the job.")
    source = serializers.CharField(help_text="The API dialect that created the job (api, dts).")
    progress = ProgressSerializer(source="*", help_text="How far the job got.")
    created_at = serializers.DateTimeField(help_text="When the job was accepted.")
    started_at = serializers.DateTimeField(
        allow_null=True, help_text="When a worker first took it, or null."
    )
    finished_at = serializers.DateTimeField(
        allow_null=True, help_text="When it reached its final status, or null."
    )


def job_summary(job: Job, request) -> dict:
    """A job as GET /api/v1/jobs/ lists it (a webhook's body too: staging.apps)."""
    return JobSummarySerializer(job, context={"request": request}).data


class SubJobCountsSerializer(serializers.Serializer):
    total = serializers.IntegerField(help_text="Sub-jobs of the job.")
    by_status = serializers.DictField(
        child=serializers.IntegerField(), help_text="How many sub-jobs are in each status."
    )


class JobDetailSerializer(JobSummarySerializer):
    parameters = serializers.DictField(help_text="The task's parameters as submitted.")
    lifetime = IsoDurationField(help_text="How long staged copies stay pinned (ISO 8601).")
    priority = serializers.IntegerField(help_text="1 (lowest) to 5 (highest).")
    deadline_at = serializers.DateTimeField(
        allow_null=True,
        help_text='When the job gives up: its files not on disk by then fail with "deadline '
        'exceeded"; null: no deadline.',
    )
    result = serializers.DictField(help_text="Summary of the outcome once the job has ended.")
    error = serializers.CharField(
        source="error_text",
        help_text="Why the job failed, when it did: its own error, else how many files failed "
        "and the commonest reasons.",
    )
    updated_at = serializers.DateTimeField(help_text="When anything about the job last changed.")
    progress = DetailedProgressSerializer(
        source="progress_now", help_text="How far the job got, with its rate and time left."
    )
    subjobs = SubJobCountsSerializer(
        source="subjob_counts", help_text="The job's sub-jobs by status."
    )
    itemsuri = JobUriField("job-items", help_text="Per-file states of the job.")
    subjobsuri = JobUriField("job-subjobs", help_text="The job's sub-jobs.")


class ItemSerializer(serializers.Serializer):
    path = serializers.CharField(
        help_text="Path relative to the store's archive and staging roots."
    )
    file_id = serializers.CharField(help_text="Catalogue id of the file, or null.", allow_null=True)
    size = serializers.IntegerField(help_text="Size in bytes.")
    status = StatusField()
    bytes_done = serializers.IntegerField(help_text="Bytes copied so far.")
    attempts = serializers.IntegerField(help_text="Times a worker tried the file.")
    error = serializers.CharField(help_text="Why the file failed, when it did.")
    subjob = serializers.IntegerField(
        source="subjob.sequence", allow_null=True, help_text="The sub-job the file is in."
    )
    queued_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When it entered the queue: the job's submission, or the retry that queued "
        "it again; null for a file that failed at once.",
    )
    started_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When a worker began it (to within one progress report), or null.",
    )
    finished_at = serializers.DateTimeField(
        allow_null=True, help_text="When it reached its status, or null."
    )
    pinned_until = serializers.DateTimeField(
        allow_null=True,
        help_text="For a staged file: when the job's pin on its copy ends (its lifetime, "
        "counted from when the job was ready), or null.",
    )
    released_at = serializers.DateTimeField(
        allow_null=True, help_text="When the job's pin on the file was released, or null."
    )


class SubJobStatusSerializer(serializers.Serializer):
    status = StatusField()


class SubJobResultSerializer(serializers.Serializer):
    resulturi = serializers.URLField(help_text="Where the sub-job's result is: its files' states.")


class SubJobSerializer(serializers.Serializer):
    subjobId = serializers.IntegerField(
        source="sequence", help_text="Position of the sub-job in its job, from 1."
    )
    status = StatusField()
    files_total = serializers.IntegerField(help_text="Files in the sub-job.")
    files_done = serializers.IntegerField(help_text="Files finished so far.")
    bytes_total = serializers.IntegerField(help_text="Bytes in the sub-job.")
    bytes_done = serializers.IntegerField(help_text="Bytes copied so far.")
    bytes_per_second = serializers.FloatField(
        help_text="Copy rate over its last progress interval (0 when not running)."
    )
    attempts = serializers.IntegerField(help_text="Times a worker took the sub-job.")
    error = serializers.CharField(help_text="Why the sub-job failed, when it did.")
    created_at = serializers.DateTimeField(help_text="When the sub-job was created.")
    started_at = serializers.DateTimeField(
        allow_null=True, help_text="When a worker first took it, or null."
    )
    finished_at = serializers.DateTimeField(
        allow_null=True, help_text="When it reached its final status, or null."
    )
    resulturi = serializers.SerializerMethodField(help_text="Where the sub-job's result is.")

    @extend_schema_field(OpenApiTypes.URI)
    def get_resulturi(self, subjob: SubJob) -> str:
        return subjob_result_uri(self.context["request"], self.context["job"].uuid, subjob.sequence)


class ResultRowSerializer(serializers.Serializer):
    """One row of a job's result (a JSON object, or a CSV line). A job of a per-file task
    (stage, restore-content) has one per file with these columns; other tasks have their own
    columns (scan: file metadata; checksum: the checksum; release: pins released), which
    GET /api/v1/tasks/ lists as each task's ``results``."""

    path = serializers.CharField(help_text="Path relative to the store's roots.")
    file_id = serializers.CharField(
        required=False, allow_null=True, help_text="Catalogue id of the file."
    )
    size = serializers.IntegerField(required=False, help_text="Size in bytes.")
    status = StatusField(required=False)
    bytes_done = serializers.IntegerField(required=False, help_text="Bytes copied.")
    attempts = serializers.IntegerField(required=False, help_text="Times a worker tried the file.")
    error = serializers.CharField(required=False, help_text="Why the file failed, when it did.")
    finished_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="When it ended."
    )
    queued_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="When it entered the queue."
    )
    started_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="When a worker began it."
    )
    pinned_until = serializers.DateTimeField(
        required=False, allow_null=True, help_text="When the pin on its staged copy ends."
    )
    released_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="When that pin was released."
    )


class ResultSerializer(serializers.Serializer):
    """The JSON form of a job's results (streamed)."""

    jobId = serializers.UUIDField(help_text="The id of the job.")
    task = serializers.CharField(help_text="The task the job ran.")
    status = StatusField()
    summary = serializers.DictField(help_text="Counts of files by outcome.")
    files = ResultRowSerializer(
        many=True, help_text="One entry per result row (per file, in request order, for stage)."
    )


def result_response(job: Job, *, as_csv: bool, headers: dict | None = None):
    """The job's results streamed, in the columns its task declares (staging.api.result_streams):
    rows are read from the database in chunks, or from the job's results file, while they are
    sent."""
    return results_response(job=job, fmt="csv" if as_csv else "json", headers=headers)
