"""Seed 002's sub-job calls (NCMP → DMI) on our jobs: a data job is one of our jobs
(``requestId``), a data producer job one of its sub-jobs (``dataProducerJobId``, its position
from 1), and the data producer the job's store (``dataProducerId`` = storeID). The answers are
those of the API v1 sub-job calls."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from staging.api.fields import StrictStringField, validated
from staging.api.job_output import RETRY_AFTER, SubJobResultSerializer, SubJobStatusSerializer
from staging.api.permissions import RolePolicy
from staging.api.subjobs import subjob_result_body, subjob_status_body
from staging.errors import NotFoundError
from staging.selectors import job_get, subjob_get

PATH_PARAMETERS = [
    OpenApiParameter(
        "requestId", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The data job (job id)."
    ),
    OpenApiParameter(
        "dataProducerJobId",
        OpenApiTypes.INT,
        OpenApiParameter.PATH,
        description="The data producer job: the sub-job's position in the job, from 1.",
        examples=[OpenApiExample("the first sub-job", value=1)],
    ),
]
NOT_FOUND = OpenApiResponse(
    description="No such job visible to the caller, no such sub-job, or another data producer."
)


def _data_producer_job(request, request_id: str, producer_job_id: str, producer_id: str):
    job = job_get(job_id=request_id, user=request.user)
    if job.store.slug != producer_id:
        raise NotFoundError(f"data producer {producer_id!r} has no data job {job.uuid}")
    return job, subjob_get(job=job, subjob_id=producer_job_id)


class DmiStatusQuerySerializer(serializers.Serializer):
    dataProducerId = StrictStringField(
        max_length=64, help_text="The data producer: the job's store (storeID)."
    )


class DmiResultQuerySerializer(DmiStatusQuerySerializer):
    destination = StrictStringField(
        max_length=255,
        help_text="Where the caller wants results (a Kafka topic or bucket name); accepted for "
        "the seed's sake: the results stay in the store's staging area, at resulturi.",
    )


class DmiSubJobStatusView(APIView):
    """Data subjob status check (seed 002): the sub-job's canonical status."""

    role_policy = "jobs_read"
    permission_classes = [RolePolicy]

    @extend_schema(
        parameters=[*PATH_PARAMETERS, DmiStatusQuerySerializer],
        responses={200: SubJobStatusSerializer, 404: NOT_FOUND},
    )
    def get(self, request, requestId: str, dataProducerJobId: str):
        query = validated(DmiStatusQuerySerializer, request.query_params)
        _, subjob = _data_producer_job(
            request, requestId, dataProducerJobId, query["dataProducerId"]
        )
        return Response(subjob_status_body(subjob))


class DmiSubJobResultView(APIView):
    """Data subjob retrieve result (seed 002): where the sub-job's result is, once it ended."""

    role_policy = "jobs_read"
    permission_classes = [RolePolicy]

    @extend_schema(
        parameters=[*PATH_PARAMETERS, DmiResultQuerySerializer, RETRY_AFTER],
        responses={
            200: SubJobResultSerializer,
            404: NOT_FOUND,
            409: OpenApiResponse(description="The sub-job has not ended yet (see Retry-After)."),
        },
    )
    def get(self, request, requestId: str, dataProducerJobId: str):
        query = validated(DmiResultQuerySerializer, request.query_params)
        job, subjob = _data_producer_job(
            request, requestId, dataProducerJobId, query["dataProducerId"]
        )
        return Response(subjob_result_body(request, job, subjob))
