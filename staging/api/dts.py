"""The KBase Data Transfer System provider contract: stage files by id, poll the staging status,
describe files as Frictionless DataResources, search the catalogue, and map ORCIDs to users."""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from staging.api.conditional import STATUS_CACHE_CONTROL, etag_for, precondition_response
from staging.api.fields import StrictStringField, parse_job_id, validated
from staging.api.long_poll import PREFER, PREFERENCE_APPLIED, long_polled
from staging.api.permissions import RolePolicy
from staging.api.throttling import SubmitRateThrottle, UserRateThrottle
from staging.errors import ServiceError
from staging.models import JobStatus
from staging.orcid import ORCID_EXAMPLE
from staging.selectors import files_by_ids, job_status_error, job_status_get
from staging.selectors_dts import (
    SEARCH_DEFAULT_LIMIT,
    SEARCH_MAX_LIMIT,
    data_resource,
    files_search,
    orcid_username_get,
    search_page,
    search_words,
)
from staging.services.staging_jobs import staging_job_create

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
    error = serializers.CharField(
        required=False,
        help_text="Only when failed, beside the contract (the DTS ignores it): why, as how many "
        "files failed by reason with the first few store paths.",
    )


class CreditSerializer(serializers.Serializer):
    """KBase credit metadata (the fields the DTS copies; a site may set more)."""

    identifier = serializers.CharField(help_text="The file's catalogue id.")
    resource_type = serializers.CharField(help_text='Always "dataset".')
    titles = serializers.JSONField(allow_null=True, help_text="Titles, or null.")
    contributors = serializers.JSONField(help_text="Contributors (people, organizations).")
    dates = serializers.JSONField(help_text='Events: [{"date", "event"}].')
    version = serializers.CharField(allow_blank=True, help_text='Version, "" when unknown.')
    license = serializers.JSONField(help_text='License, "" when unknown.')
    repository = serializers.JSONField(help_text='{"organization_id", "organization_name"}.')
    comment = serializers.CharField(allow_blank=True, help_text="Free text.")
    description = serializers.CharField(allow_blank=True, help_text="Free text.")
    funding = serializers.JSONField(allow_null=True, help_text="Funding references, or null.")
    related_identifiers = serializers.JSONField(
        allow_null=True, help_text="Related persistent ids (DOIs, ...), or null."
    )


class SourceSerializer(serializers.Serializer):
    title = serializers.CharField(allow_blank=True, help_text="Who or what the data came from.")
    path = serializers.CharField(allow_blank=True, help_text="Where the data came from (a URL).")
    email = serializers.CharField(allow_blank=True, help_text="Whom to ask about it.")


class DataResourceSerializer(serializers.Serializer):
    """A Frictionless DataResource describing one catalogue file."""

    id = serializers.CharField(help_text="Catalogue id of the file.")
    name = serializers.CharField(help_text="Lower-case name derived from the file name.")
    path = serializers.CharField(help_text="Path relative to the staging-area root.")
    format = serializers.CharField(allow_blank=True, help_text="File name extension, lower case.")
    mediatype = serializers.CharField(help_text="IANA media type (Frictionless spelling).")
    media_type = serializers.CharField(help_text="The same, as the DTS guide's example spells it.")
    bytes = serializers.IntegerField(help_text="Size in bytes.")
    hash = serializers.CharField(
        allow_blank=True, help_text="MD5 of the file (hex), or an empty string when unknown."
    )
    credit = CreditSerializer(help_text="KBase credit metadata (the store's, then the file's).")
    sources = SourceSerializer(many=True, help_text="Where the data came from.")


RESOURCE_EXAMPLE = {
    "id": "4c1b6d4b2f6e5e3c9d3f0a8e2b7c6d1e",
    "name": "3300047546",
    "path": "img/submissions/255985/3300047546.tar.gz",
    "format": "tar.gz",
    "mediatype": "application/x-tar",
    "media_type": "application/x-tar",
    "bytes": 709508155,
    "hash": "fefe05140b0cad4e5d525acb066439e5",
    "credit": {
        "comment": "",
        "description": "",
        "identifier": "4c1b6d4b2f6e5e3c9d3f0a8e2b7c6d1e",
        "license": "CC-BY-4.0",
        "resource_type": "dataset",
        "version": "",
        "contributors": [
            {
                "contributor_type": "Person",
                "contributor_id": "ORCID:0000-0002-1825-0097",
                "name": "Carberry, Josiah",
                "credit_name": "Carberry, Josiah",
                "affiliations": [{"organization_id": "", "organization_name": "Brown University"}],
                "contributor_roles": "PI",
            }
        ],
        "dates": [{"date": "2019-09-17", "event": "approval"}],
        "funding": None,
        "related_identifiers": None,
        "repository": {"organization_id": "", "organization_name": "Example Archive"},
        "titles": None,
    },
    "sources": [
        {
            "title": "Carberry, Josiah (Brown University)",
            "path": "https://doi.org/10.46936/10.25585/60001289",
            "email": "josiah@example.org",
        }
    ],
}


class LocalUserSerializer(serializers.Serializer):
    orcid = serializers.CharField(help_text="The ORCID asked for.")
    username = serializers.CharField(help_text="The local user holding it.")


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
            404: OpenApiResponse(
                description="Unknown ids: the first few in unknown_ids, how many in "
                "unknown_ids_count."
            ),
        },
    )
    def post(self, request):
        ids = validated(self.InputSerializer, request.data)["ids"]
        # The DTS names files by id only, of any store: each id names its store.
        job = staging_job_create(owner=request.user, ids=ids, source="dts")
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
            PREFER,
            OpenApiParameter(
                "ETag", str, OpenApiParameter.HEADER, response=True, description="Validator."
            ),
            PREFERENCE_APPLIED,
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
        return long_polled(request, lambda: self._answer(request, job_uuid))

    def _answer(self, request, job_uuid):
        row = job_status_get(job_uuid=job_uuid, user=request.user)
        word = DTS_STATUS[row["status"]]
        headers = {"ETag": etag_for("dts", job_uuid, word), "Cache-Control": STATUS_CACHE_CONTROL}
        decided = precondition_response(request, headers)
        if decided is not None:
            return decided, row
        body = {"status": word}
        # Beside the contract's one field, for a failed request only: the DTS ignores it, a
        # person reading the answer learns why.
        error = job_status_error(row)
        if error:
            body["error"] = error
        return Response(body, headers=headers), row


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
                # One item of the list (the schema shows it as a list of one).
                examples=[OpenApiExample("a known id", value=RESOURCE_EXAMPLE)],
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


class DtsSearchView(APIView):
    """Catalogue search for the DTS: files whose path (or name) contains every word."""

    role_policy = "dts"
    permission_classes = [RolePolicy]

    @extend_schema(
        operation_id="dts_search",
        description="Files whose path or name contains every word of the query, ignoring case, "
        "ordered by store and path; paged by limit and offset.",
        parameters=[
            OpenApiParameter(
                "query",
                str,
                required=True,
                description="Words separated by spaces; each must occur in the path.",
                examples=[OpenApiExample("two words", value="3300047546 tar")],
            ),
            OpenApiParameter(
                "limit",
                int,
                description=f"Results per page, 1 to {SEARCH_MAX_LIMIT} "
                f"(default {SEARCH_DEFAULT_LIMIT}).",
            ),
            OpenApiParameter("offset", int, description="Results to skip (default 0)."),
        ],
        responses={
            200: OpenApiResponse(
                DataResourceSerializer(many=True),
                "The page of matching files as DataResources (an empty list past the last).",
                examples=[OpenApiExample("one match", value=RESOURCE_EXAMPLE)],
            ),
            400: OpenApiResponse(description="Empty query, or a bad limit or offset."),
        },
    )
    def get(self, request):
        params = request.query_params
        words = search_words(params.get("query"))
        limit, offset = search_page(limit=params.get("limit"), offset=params.get("offset"))
        files = files_search(words=words, limit=limit, offset=offset)
        return Response([data_resource(file) for file in files])


class DtsLocalUserView(APIView):
    """ORCID federation: the local username of the user holding an ORCID."""

    role_policy = "dts"
    permission_classes = [RolePolicy]

    @extend_schema(
        operation_id="dts_localuser",
        description="The local user an ORCID belongs to (set with createtoken --orcid, setorcid "
        "or in the admin).",
        parameters=[
            OpenApiParameter(
                "orcid",
                str,
                OpenApiParameter.PATH,
                description="An ORCID iD; its last character is an ISO 7064 MOD 11-2 check.",
                examples=[OpenApiExample("Josiah Carberry", value=ORCID_EXAMPLE)],
            )
        ],
        responses={
            200: OpenApiResponse(
                LocalUserSerializer,
                examples=[
                    OpenApiExample(
                        "a known ORCID", value={"orcid": ORCID_EXAMPLE, "username": "psyclay"}
                    )
                ],
            ),
            400: OpenApiResponse(description="Not an ORCID, or a wrong check character."),
            404: OpenApiResponse(description="No user has this ORCID."),
        },
    )
    def get(self, request, orcid: str):
        return Response({"orcid": orcid, "username": orcid_username_get(orcid=orcid)})
