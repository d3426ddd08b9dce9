"""API v1 sub-jobs of a job (seed 002's "data producer jobs"): the list, each one's status and
where its result is. The seed-002 paths in staging.api.dmi answer the same bodies."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from staging.api.job_output import (
    JOB_ID,
    RETRY_AFTER,
    SUBJOB_ID,
    SubJobResultSerializer,
    SubJobSerializer,
    SubJobStatusSerializer,
    poll_interval,
    subjob_result_uri,
)
from staging.api.pagination import PaginatedView, SubJobCursorPagination
from staging.api.permissions import RolePolicy
from staging.errors import ConflictError
from staging.models import TERMINAL_STATUSES, Job, SubJob
from staging.selectors import job_get, job_subjobs, subjob_get


class JobSubJobsView(PaginatedView):
    """The job's sub-jobs (each one Celery task over a slice of its files), in order."""

    role_policy = "jobs_read"
    permission_classes = [RolePolicy]
    pagination_class = SubJobCursorPagination

    @extend_schema(
        parameters=[JOB_ID],
        responses={
            200: SubJobSerializer(many=True),
            404: OpenApiResponse(description="No such job, or an invalid cursor."),
        },
    )
    def get(self, request, job_id: str):
        job = job_get(job_id=job_id, user=request.user)
        return self.paginated(job_subjobs(job=job), SubJobSerializer, {"job": job})


def subjob_status_body(subjob: SubJob) -> dict:
    return SubJobStatusSerializer(subjob).data


def subjob_result_body(request, job: Job, subjob: SubJob) -> dict:
    """Where the sub-job's result is, once it has ended (409 with Retry-After before)."""
    if subjob.status not in TERMINAL_STATUSES:
        raise ConflictError(
            f"sub-job {subjob.sequence} of job {job.uuid} is {subjob.status}; "
            "its result is ready once it has ended",
            headers={"Retry-After": str(poll_interval())},
        )
    return SubJobResultSerializer(
        {"resulturi": subjob_result_uri(request, job.uuid, subjob.sequence)}
    ).data


class SubJobStatusView(APIView):
    """The sub-job's canonical status."""

    role_policy = "jobs_read"
    permission_classes = [RolePolicy]

    @extend_schema(
        parameters=[JOB_ID, SUBJOB_ID],
        responses={
            200: SubJobStatusSerializer,
            404: OpenApiResponse(description="No such job or sub-job."),
        },
    )
    def get(self, request, job_id: str, subjob_id: str):
        job = job_get(job_id=job_id, user=request.user)
        return Response(subjob_status_body(subjob_get(job=job, subjob_id=subjob_id)))


class SubJobResultView(APIView):
    """Where the sub-job's result is (its files' states), once it has ended."""

    role_policy = "jobs_read"
    permission_classes = [RolePolicy]

    @extend_schema(
        parameters=[JOB_ID, SUBJOB_ID, RETRY_AFTER],
        responses={
            200: SubJobResultSerializer,
            404: OpenApiResponse(description="No such job or sub-job."),
            409: OpenApiResponse(description="The sub-job has not ended yet (see Retry-After)."),
        },
    )
    def get(self, request, job_id: str, subjob_id: str):
        job = job_get(job_id=job_id, user=request.user)
        subjob = subjob_get(job=job, subjob_id=subjob_id)
        return Response(subjob_result_body(request, job, subjob))
