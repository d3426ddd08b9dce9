"""The KBase Data Transfer System provider contract: stage files by id, poll the staging status,
describe files as Frictionless DataResources."""

from pathlib import PurePosixPath

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from staging.api.conditional import STATUS_CACHE_CONTROL, etag_for, not_modified
from staging.api.fields import StrictStringField, validated
from staging.api.permissions import RolePolicy
from staging.api.throttling import SubmitRateThrottle, UserRateThrottle
from staging.errors import NotFoundError, ServiceError
from staging.models import File, JobStatus
from staging.selectors import files_by_ids, job_status_get, parse_job_id
from staging.services.jobs import job_create_staging

# The DTS knows four words. "ready" means every file is at its path in the staging area: a job is
# FINISHED only after its last file was verified in place.
DTS_STATUS = {
    JobStatus.NOT_STARTED: "staging",
    JobStatus.RUNNING: "staging",
    JobStatus.CANCELLING: "staging",
    JobStatus.FINISHED: "ready",
    JobStatus.PARTIALLY_FAILED: "failed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}


def _unique_in_order(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _max_ids() -> int:
    return settings.STAGING["MAX_FILES_PER_REQUEST"]


class DtsRequestCreatedSerializer(serializers.Serializer):
    request_id = serializers.UUIDField(help_text="Id of the staging request, to poll its status.")


class DtsStatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=sorted(set(DTS_STATUS.values())),
        help_text="staging (not all files are in place yet), ready (every file is at its path "
        "in the staging area), failed, or cancelled.",
    )


class DataResourceSerializer(serializers.Serializer):
    """A Frictionless DataResource describing one catalogue file."""

    id = serializers.CharField(help_text="Catalogue id of the file.")
    name = serializers.CharField(help_text="Lower-case name derived from the file name.")
    path = serializers.CharField(help_text="Path relative to the staging-area root.")
    format = serializers.CharField(help_text="File name extension, lower case.")
    media_type = serializers.CharField(help_text="IANA media type.")
    bytes = serializers.IntegerField(help_text="Size in bytes.")
    hash = serializers.CharField(
        required=False, help_text="MD5 (hex), or sha256:<hex>, when known."
    )


class DtsStagingView(APIView):
    role_policy = "dts"
    permission_classes = [RolePolicy]
    throttle_classes = [UserRateThrottle, SubmitRateThrottle]

    class InputSerializer(serializers.Serializer):
        ids = serializers.ListField(
            child=StrictStringField(max_length=64, allow_blank=False),
            allow_empty=False,
            help_text="Catalogue ids of the files to stage.",
        )

        def validate_ids(self, ids):
            if len(ids) > _max_ids():
                raise serializers.ValidationError(
                    f"At most {_max_ids()} ids per request; this one has {len(ids)}."
                )
            return _unique_in_order(ids)

    @extend_schema(
        operation_id="dts_staging_create",
        description="Stage the files with these catalogue ids; answers the request id to poll.",
        request=InputSerializer,
        responses={
            201: DtsRequestCreatedSerializer,
            404: OpenApiResponse(description="Unknown ids, all listed in unknown_ids."),
        },
    )
    def post(self, request):
        ids = validated(self.InputSerializer, request.data)["ids"]
        found = files_by_ids(ids=ids)
        unknown = [file_id for file_id in ids if file_id not in found]
        if unknown:
            raise NotFoundError(
                f"{len(unknown)} of {len(ids)} ids are unknown: {', '.join(unknown[:20])}",
                field="ids",
                extra={"unknown_ids": unknown},
            )
        files = [found[file_id] for file_id in ids]
        job = job_create_staging(
            owner=request.user, store=files[0].store, files=files, source="dts"
        )
        return Response({"request_id": str(job.uuid)}, status=201)

    @extend_schema(
        operation_id="dts_staging_status",
        description="The staging request's status in the DTS's four words.",
        parameters=[
            OpenApiParameter(
                "id", OpenApiTypes.UUID, required=True, description="The staging request id."
            ),
            OpenApiParameter(
                "If-None-Match",
                str,
                OpenApiParameter.HEADER,
                description="The ETag of an earlier answer: 304 while it still holds.",
            ),
            OpenApiParameter(
                "ETag", str, OpenApiParameter.HEADER, response=True, description="Validator."
            ),
        ],
        responses={
            200: DtsStatusSerializer,
            304: OpenApiResponse(description="Nothing changed since the ETag sent."),
            400: OpenApiResponse(description="The id is missing or not a UUID."),
            404: OpenApiResponse(description="No such request visible to the caller."),
        },
    )
    def get(self, request):
        job_uuid = parse_job_id(request.query_params.get("id"))
        word = DTS_STATUS[job_status_get(job_uuid=job_uuid, user=request.user)]
        headers = {"ETag": etag_for("dts", job_uuid, word), "Cache-Control": STATUS_CACHE_CONTROL}
        return not_modified(request, headers["ETag"]) or Response({"status": word}, headers=headers)


def data_resource(file: File) -> dict:
    """A Frictionless DataResource; ``path`` is relative to the staging-area root."""
    name = PurePosixPath(file.path).name
    stem, _, extension = name.partition(".")
    resource = {
        "id": file.id,
        "name": "".join(c if c.isalnum() or c in "-._" else "_" for c in stem.lower()) or "file",
        "path": file.path,
        "format": extension.lower(),
        "media_type": file.media_type,
        "bytes": file.size,
    }
    if file.md5:
        resource["hash"] = file.md5
    elif file.sha256:
        resource["hash"] = f"sha256:{file.sha256}"
    return resource


class DtsResourcesView(APIView):
    """Frictionless DataResources for catalogue ids, in request order."""

    role_policy = "dts"
    permission_classes = [RolePolicy]

    @extend_schema(
        operation_id="dts_resources",
        parameters=[
            OpenApiParameter(
                "ids", str, required=True, description="Comma-separated catalogue file ids."
            )
        ],
        responses={
            200: OpenApiResponse(
                DataResourceSerializer(many=True),
                "One DataResource per id in request order; null for an unknown id.",
            ),
            400: OpenApiResponse(description="ids missing or malformed, or too many."),
        },
    )
    def get(self, request):
        raw = request.query_params.get("ids", "")
        ids = [part.strip() for part in raw.split(",")]
        if not raw.strip() or not all(ids):
            raise ServiceError("ids must be a comma-separated list of file ids", field="ids")
        if len(ids) > _max_ids():
            raise ServiceError(f"At most {_max_ids()} ids per request", field="ids")
        found = files_by_ids(ids=ids)
        return Response([data_resource(found[i]) if i in found else None for i in ids])
