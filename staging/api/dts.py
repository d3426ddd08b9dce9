"""The KBase Data Transfer System provider contract: stage files by id, poll the staging status,
describe files as Frictionless DataResources."""

from pathlib import PurePosixPath

from django.conf import settings
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from staging.api.fields import StrictStringField, validated
from staging.api.permissions import RolePolicy
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


class DtsStagingView(APIView):
    role_policy = "dts"
    permission_classes = [RolePolicy]

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

    def get(self, request):
        job_uuid = parse_job_id(request.query_params.get("id"))
        status = job_status_get(job_uuid=job_uuid, user=request.user)
        return Response({"status": DTS_STATUS[status]})


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
    role_policy = "dts"
    permission_classes = [RolePolicy]

    def get(self, request):
        raw = request.query_params.get("ids", "")
        ids = [part.strip() for part in raw.split(",")]
        if not raw.strip() or not all(ids):
            raise ServiceError("ids must be a comma-separated list of file ids", field="ids")
        if len(ids) > _max_ids():
            raise ServiceError(f"At most {_max_ids()} ids per request", field="ids")
        found = files_by_ids(ids=ids)
        return Response([data_resource(found[i]) if i in found else None for i in ids])
