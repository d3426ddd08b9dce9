"""The WLCG Tape REST API v1, as FTS3 and gfal2 speak it to dCache, StoRM and EOS/CTA: discover
the endpoint, stage files by path, poll, cancel, delete, release, ask where files are.

Paths map into stores by the rule in ``staging.tape_namespace`` (``/<storeID>/…``, or the primary
store); answers echo each path as the client sent it, repeated slashes collapsed, because
clients find their files in an answer by path. Every POST route also answers with a trailing
slash (gfal2 2.21 posts to ``/stage/``, newer releases to ``/stage``).
"""

from django.conf import settings
from django.urls import get_script_prefix
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from staging.api.fields import (
    IsoDurationField,
    StrictStringField,
    path_lengths_check,
    validated,
)
from staging.api.parsers import NDJSON, JSONParser, NDJSONParser, body_drained, nul_character_at
from staging.api.permissions import RolePolicy
from staging.api.throttling import SubmitRateThrottle, UserRateThrottle
from staging.errors import ServiceError, validation_detail, validation_errors
from staging.models import TERMINAL_STATUSES, Job, JobStatus
from staging.selectors import stage_request_get
from staging.services.deadlines import deadline_parse
from staging.services.tape import (
    StageFile,
    stage_request_cancel,
    stage_request_create,
    stage_request_create_streamed,
    stage_request_delete,
    stage_request_release,
    stage_requests_release_for_owner,
)
from staging.tape_namespace import file_localities

TAPE_API_PATH = "tape/api/v1"
# The longest path a file's row can hold (Item.path, File.path): a longer one is a 400 that
# says so, not a database error.
MAX_PATH_LENGTH = 1024

# Per-file state of a stage request, from the item's canonical status (API.md's table).
TAPE_FILE_STATE = {
    JobStatus.NOT_STARTED: "SUBMITTED",
    JobStatus.RUNNING: "STARTED",
    JobStatus.CANCELLING: "STARTED",
    JobStatus.FINISHED: "COMPLETED",
    JobStatus.FAILED: "FAILED",
    JobStatus.PARTIALLY_FAILED: "FAILED",
    JobStatus.CANCELLED: "CANCELLED",
}

# What gfal2 puts in place of the request id when its user gives none (gfal-evict URL):
# such a release drops the caller's own pins on the paths, whichever request holds them.
GFAL2_PLACEHOLDER_ID = "gfal2-placeholder-id"


def tape_api_uri(request) -> str:
    """The absolute base URI of this API; the scheme is https behind a TLS proxy only when
    TRUST_X_FORWARDED_PROTO says to believe its X-Forwarded-Proto."""
    return request.build_absolute_uri(f"{get_script_prefix()}{TAPE_API_PATH}")


def _epoch(moment) -> int | None:
    return int(moment.timestamp()) if moment else None


def _max_paths() -> int:
    return settings.STAGING["MAX_FILES_PER_REQUEST"]


REQUEST_ID = OpenApiParameter(
    "request_id",
    str,
    OpenApiParameter.PATH,
    description="The requestId a stage request answered with.",
)
NO_SUCH_REQUEST = OpenApiResponse(description="No such stage request visible to the caller.")
DONE = OpenApiResponse(description="Done; the body is empty.")


class PathsInputSerializer(serializers.Serializer):
    paths = serializers.ListField(
        child=StrictStringField(
            max_length=MAX_PATH_LENGTH,
            allow_blank=False,
            help_text="A path, as in the stage request.",
        ),
        allow_empty=False,
        help_text="Absolute paths: /<storeID>/<path>, or /<path> in the primary store.",
    )

    def validate_paths(self, paths):
        if len(paths) > _max_paths():
            raise serializers.ValidationError(
                f"At most {_max_paths()} paths per request; this one has {len(paths)}."
            )
        return paths


class WellKnownView(APIView):
    """``GET /.well-known/wlcg-tape-rest-api``: where this site's tape API is. Public."""

    authentication_classes: list = []
    role_policy = "tape_discovery"
    permission_classes = [RolePolicy]

    class OutputSerializer(serializers.Serializer):
        class EndpointSerializer(serializers.Serializer):
            uri = serializers.URLField(help_text="The base URI of the tape API.")
            version = serializers.CharField(help_text="Its version: v1.")
            metadata = serializers.DictField(help_text="Nothing, for now.")

        sitename = serializers.CharField(help_text="This site's name (TAPE_SITENAME).")
        description = serializers.CharField(help_text="What the site is.")
        endpoints = EndpointSerializer(many=True, help_text="Where the API is.")

    @extend_schema(
        description="Where this site's WLCG Tape REST API is, as FTS3 and gfal2 look it up. "
        "Public.",
        responses={200: OutputSerializer},
    )
    def get(self, request):
        return Response(
            {
                "sitename": settings.TAPE["SITENAME"],
                "description": settings.TAPE["DESCRIPTION"],
                "endpoints": [{"uri": tape_api_uri(request), "version": "v1", "metadata": {}}],
            }
        )


class StageView(APIView):
    """``POST {uri}/stage``: a new stage request; its ``files`` as a JSON object's, or as an
    NDJSON body (one entry a line) for a request too big for one."""

    role_policy = "tape"
    permission_classes = [RolePolicy]
    throttle_classes = [UserRateThrottle, SubmitRateThrottle]
    parser_classes = [JSONParser, NDJSONParser]

    class InputSerializer(serializers.Serializer):
        # Field names are the wire names, camelCase as the specification spells them.
        class FileSerializer(serializers.Serializer):
            path = StrictStringField(
                max_length=MAX_PATH_LENGTH,
                validators=[path_lengths_check],
                allow_blank=False,
                help_text="/<storeID>/<path>, or /<path> in the primary store.",
            )
            diskLifetime = IsoDurationField(
                required=False,
                help_text="How long the staged copy stays pinned (ISO 8601, e.g. P7D).",
            )
            targetedMetadata = serializers.DictField(
                required=False,
                help_text="Metadata by site name; only this site's is kept (on the job).",
            )

            def validate_targetedMetadata(self, metadata):
                sitename = settings.TAPE["SITENAME"]
                ours = metadata.get(sitename)
                if ours is not None and not isinstance(ours, dict):
                    raise serializers.ValidationError(
                        f"The metadata for {sitename} must be an object."
                    )
                priority = (ours or {}).get("priority")
                if priority is not None and (
                    type(priority) is not int or not 1 <= priority <= 5  # a bool is no priority
                ):
                    raise serializers.ValidationError(
                        f"{sitename}.priority must be an integer from 1 to 5, not {priority!r}."
                    )
                deadline = (ours or {}).get("deadline")
                if deadline is not None:
                    try:
                        deadline_parse(deadline, field=f"{sitename}.deadline")
                    except ServiceError as exc:
                        raise serializers.ValidationError(exc.detail) from exc
                return metadata

        files = FileSerializer(many=True, allow_empty=False, help_text="The files to stage.")

        def validate_files(self, files):
            if len(files) > _max_paths():
                raise serializers.ValidationError(
                    f"At most {_max_paths()} files per request; this one has {len(files)}."
                )
            return files

    class OutputSerializer(serializers.Serializer):
        requestId = serializers.CharField(help_text="The stage request's id.")

    @extend_schema(
        description="A new stage request: 201 with its requestId and Location. Files not yet "
        "catalogued are catalogued; a path that is no file fails on its own.",
        parameters=[
            OpenApiParameter(
                "Location",
                OpenApiTypes.URI,
                OpenApiParameter.HEADER,
                description="The new request's URI: poll it.",
                response=[201],
            )
        ],
        request={
            "application/json": InputSerializer,
            NDJSON: OpenApiTypes.STR,  # one entry of files (or a bare path) per line
        },
        responses={201: OutputSerializer},
    )
    def post(self, request, **kwargs):
        if request.content_type.startswith(NDJSON):
            try:
                job = stage_request_create_streamed(
                    owner=request.user, files=self._files_streamed(request.data)
                )
            except Exception:
                body_drained(request)
                raise
            return self._created(request, job)
        data = validated(self.InputSerializer, request.data)
        sitename = settings.TAPE["SITENAME"]
        job = stage_request_create(
            owner=request.user,
            files=[
                StageFile(
                    path=f["path"],
                    disk_lifetime=f.get("diskLifetime"),
                    metadata=f.get("targetedMetadata", {}).get(sitename),
                )
                for f in data["files"]
            ],
        )
        return self._created(request, job)

    def _created(self, request, job: Job) -> Response:
        location = f"{tape_api_uri(request)}/stage/{job.uuid}"
        return Response({"requestId": str(job.uuid)}, status=201, headers={"Location": location})

    def _files_streamed(self, entries):
        """The files of an NDJSON body, checked as they come: each line one entry of
        ``files`` (a bare JSON string is a path alone); a bad one is a 400 naming its line."""
        sitename = settings.TAPE["SITENAME"]
        limit = _max_paths()
        for count, (where, value) in enumerate(entries, start=1):
            if count > limit:
                raise ServiceError(
                    f"At most {limit} files per request; {where} is one more", field="files"
                )
            if isinstance(value, str):
                value = {"path": value}
            if isinstance(value, dict) and nul_character_at(value):
                raise ServiceError(f"{where}: contains a NUL character (\\u0000)", field="files")
            try:
                if isinstance(value, dict) and value.keys() == {"path"}:
                    # The common line, checked without a serializer (a million of them).
                    yield where, StageFile(path=self._path_checked(value["path"]))
                    continue
                entry = validated(self.InputSerializer.FileSerializer, value)
            except serializers.ValidationError as exc:
                detail = validation_detail(validation_errors(exc.detail))
                raise ServiceError(f"{where}: {detail}", field="files") from exc
            yield (
                where,
                StageFile(
                    path=entry["path"],
                    disk_lifetime=entry.get("diskLifetime"),
                    metadata=entry.get("targetedMetadata", {}).get(sitename),
                ),
            )

    @staticmethod
    def _path_checked(path) -> str:
        if not isinstance(path, str) or not path:
            raise serializers.ValidationError("path must be a non-empty string.")
        if len(path) > MAX_PATH_LENGTH:
            raise serializers.ValidationError(
                f"Ensure path has no more than {MAX_PATH_LENGTH} characters."
            )
        return path_lengths_check(path)


class StageRequestView(APIView):
    """``GET {uri}/stage/{id}``: progress per file; ``DELETE``: cancel and forget."""

    role_policy = "tape"
    permission_classes = [RolePolicy]

    class OutputSerializer(serializers.Serializer):
        """Optional fields are left out rather than sent as null, as the specification asks."""

        class FileSerializer(serializers.Serializer):
            path = serializers.CharField(help_text="The path as the client sent it.")
            state = serializers.ChoiceField(
                choices=sorted(set(TAPE_FILE_STATE.values())), help_text="The file's state."
            )
            startedAt = serializers.IntegerField(
                required=False, help_text="When staging began (epoch seconds)."
            )
            finishedAt = serializers.IntegerField(
                required=False, help_text="When the file ended (epoch seconds)."
            )
            error = serializers.CharField(required=False, help_text="Why the file failed.")

        id = serializers.CharField(help_text="The request id.")
        createdAt = serializers.IntegerField(help_text="When it was made (epoch seconds).")
        startedAt = serializers.IntegerField(help_text="When work began (epoch seconds).")
        completedAt = serializers.IntegerField(
            required=False, help_text="When every file had ended (epoch seconds)."
        )
        files = FileSerializer(many=True, help_text="Every file of the request.")

    @extend_schema(
        description="The request's progress, file by file.",
        parameters=[REQUEST_ID],
        responses={200: OutputSerializer, 404: NO_SUCH_REQUEST},
    )
    def get(self, request, request_id, **kwargs):
        job = stage_request_get(request_id=request_id, user=request.user)
        return Response(self.OutputSerializer(_stage_request_body(job)).data)

    @extend_schema(
        description="Cancel what still runs and release every pin; the request then answers 404.",
        parameters=[REQUEST_ID],
        responses={200: DONE, 404: NO_SUCH_REQUEST},
    )
    def delete(self, request, request_id, **kwargs):
        stage_request_delete(job=stage_request_get(request_id=request_id, user=request.user))
        return Response(status=200)


def _stage_request_body(job: Job) -> dict:
    tape = job.parameters.get("tape", {})
    prefix, aliases = tape.get("prefix", ""), tape.get("aliases", {})
    files = []
    items = job.items.order_by("pk").values_list(
        "path", "status", "error", "started_at", "finished_at"
    )
    for path, status, error, started_at, finished_at in items.iterator(chunk_size=2000):
        entry = {"path": aliases.get(path, f"{prefix}/{path}"), "state": TAPE_FILE_STATE[status]}
        if status != JobStatus.NOT_STARTED:
            entry["startedAt"] = _epoch(started_at or finished_at or job.started_at)
        if status in TERMINAL_STATUSES and finished_at:
            entry["finishedAt"] = _epoch(finished_at)
        if status == JobStatus.FAILED:
            entry["error"] = error or "staging failed"
        files.append({key: value for key, value in entry.items() if value is not None})
    body = {
        "id": str(job.uuid),
        "createdAt": _epoch(job.created_at),
        # The specification: "if not set, should be same as createdAt".
        "startedAt": _epoch(job.started_at or job.created_at),
        "files": files,
    }
    if job.status in TERMINAL_STATUSES and job.finished_at:
        body["completedAt"] = _epoch(job.finished_at)
    return body


class StageCancelView(APIView):
    """``POST {uri}/stage/{id}/cancel``: cancel some files of a request."""

    role_policy = "tape"
    permission_classes = [RolePolicy]
    InputSerializer = PathsInputSerializer

    @extend_schema(
        description="Cancel some files of a request; a path not in it is a 400 and nothing "
        "is cancelled.",
        parameters=[REQUEST_ID],
        request=InputSerializer,
        responses={200: DONE, 404: NO_SUCH_REQUEST},
    )
    def post(self, request, request_id, **kwargs):
        paths = validated(self.InputSerializer, request.data)["paths"]
        job = stage_request_get(request_id=request_id, user=request.user)
        stage_request_cancel(job=job, paths=paths)
        return Response(status=200)


class ReleaseView(APIView):
    """``POST {uri}/release/{id}``: the client no longer needs these staged files."""

    role_policy = "tape"
    permission_classes = [RolePolicy]
    InputSerializer = PathsInputSerializer

    @extend_schema(
        description="The client no longer needs these staged files: their pins are released. "
        f"With the id {GFAL2_PLACEHOLDER_ID}, the caller's own pins on the paths.",
        parameters=[REQUEST_ID],
        request=InputSerializer,
        responses={200: DONE, 404: NO_SUCH_REQUEST},
    )
    def post(self, request, request_id, **kwargs):
        paths = validated(self.InputSerializer, request.data)["paths"]
        if request_id == GFAL2_PLACEHOLDER_ID:
            stage_requests_release_for_owner(owner=request.user, paths=paths)
        else:
            job = stage_request_get(request_id=request_id, user=request.user)
            stage_request_release(job=job, paths=paths)
        return Response(status=200)


class ArchiveInfoView(APIView):
    """``POST {uri}/archiveinfo``: where each file is (see ``staging.tape_namespace.Locality``)."""

    role_policy = "tape"
    permission_classes = [RolePolicy]
    InputSerializer = PathsInputSerializer

    class OutputSerializer(serializers.Serializer):
        path = serializers.CharField(help_text="The path as the client sent it.")
        locality = serializers.CharField(
            required=False,
            help_text="DISK, TAPE, DISK_AND_TAPE, LOST or UNAVAILABLE (or an error instead).",
        )
        error = serializers.CharField(required=False, help_text="Why no locality is known.")

    @extend_schema(
        description="Where each file is: the archive plays the tape, the staging area the disk.",
        request=InputSerializer,
        responses={200: OutputSerializer(many=True)},
    )
    def post(self, request, **kwargs):
        paths = validated(self.InputSerializer, request.data)["paths"]
        return Response(self.OutputSerializer(file_localities(paths=paths), many=True).data)
