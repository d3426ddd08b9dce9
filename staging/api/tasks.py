"""The task catalogue in API v1: a store's tasks with their parameter schemas, and performing
one, which answers 202 Accepted with ``Location:`` the job's task status (seed 001)."""

from drf_spectacular.plumbing import ComponentRegistry, get_doc
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from staging.api.job_output import LOCATION, SubmittedJobSerializer, status_uri
from staging.api.openapi import StagingAutoSchema
from staging.api.permissions import RolePolicy
from staging.api.throttling import SubmitRateThrottle, UserRateThrottle
from staging.catalogue import task_types_for
from staging.models import StoreKind
from staging.selectors import store_get
from staging.services.tasks import task_perform

STORE_ID = OpenApiParameter(
    "storeID",
    str,
    OpenApiParameter.QUERY,
    description="The store (as DuraCloud names it); the primary store when absent or empty.",
)
TASK_NAME = OpenApiParameter(
    "task_name",
    str,
    OpenApiParameter.PATH,
    description="A task the store supports (GET /api/v1/tasks/ lists them).",
    examples=[OpenApiExample("the test task", value="noop")],
)


def store_id_param(request) -> str | None:
    """``?storeID=`` as DuraCloud spells it; absent or empty means the primary store."""
    return request.query_params.get("storeID") or None


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": True,
        "description": "JSON Schema of the task's parameters (the POST body).",
    }
)
class ParametersSchemaField(serializers.Field):
    def to_representation(self, task):
        return parameters_schema(task.parameters)


# Spectacular's additions to what the catalogue has always published: string lengths, and the
# id it matches enums by to hoist them into OpenAPI components.
_UNPUBLISHED = ("minLength", "maxLength", "x-spec-enum-id")


def parameters_schema(parameters: type[serializers.Serializer]) -> dict:
    """The JSON Schema of a task's parameters: drf-spectacular's schema of its serializer, as
    the POST body of TaskPerformView. Unknown keys are refused (TaskParameters), so
    additionalProperties is false; required keys are listed in the fields' order."""
    auto_schema = StagingAutoSchema()
    auto_schema.registry = ComponentRegistry()
    auto_schema.view = TaskPerformView(request=None)
    generated = auto_schema.resolve_serializer(parameters, "request").schema or {}
    fields = parameters().fields
    schema = {
        "type": "object",
        "properties": {
            name: _published(generated["properties"][name], field) for name, field in fields.items()
        },
        "additionalProperties": False,
    }
    required = [name for name, field in fields.items() if field.required]
    if required:
        schema["required"] = required
    # Spectacular describes a serializer by its docstring, but not one without fields (noop).
    description = " ".join(get_doc(parameters).split())
    if description:
        schema["description"] = description
    return schema


def _published(schema: dict, field: serializers.Field) -> dict:
    """A parameter's schema less _UNPUBLISHED, described by its own help text (spectacular
    appends an enum's choices to it)."""
    published = {key: value for key, value in schema.items() if key not in _UNPUBLISHED}
    if "items" in published:
        published["items"] = _published(published["items"], field.child)
    if field.help_text:
        published["description"] = str(field.help_text)
    return published


class TaskListView(APIView):
    """The tasks a store supports, with what each takes and gives."""

    role_policy = "tasks"
    permission_classes = [RolePolicy]

    class TaskSerializer(serializers.Serializer):
        name = serializers.CharField(help_text="The task, for POST /api/v1/tasks/{task_name}/.")
        description = serializers.CharField(help_text="What the task does.")
        parameters = ParametersSchemaField(source="*", help_text="JSON Schema of its parameters.")
        results = serializers.ListField(
            source="result_columns",
            child=serializers.CharField(help_text="A column name."),
            help_text="The columns of its result rows (stage with verify adds algorithm and "
            "checksum).",
        )

    class OutputSerializer(serializers.Serializer):
        storeID = serializers.CharField(source="store.slug", help_text="The store.")
        kind = serializers.ChoiceField(
            source="store.kind", choices=StoreKind.choices, help_text="The store's kind."
        )
        tasks = serializers.SerializerMethodField(help_text="The tasks it supports, by name.")

        def get_tasks(self, listing) -> list[dict]:
            return TaskListView.TaskSerializer(listing["tasks"], many=True).data

    @extend_schema(
        description="The tasks a store supports (by name), each with its description, the JSON "
        "Schema of its parameters and the columns of its results.",
        parameters=[STORE_ID],
        responses={200: OutputSerializer, 404: OpenApiResponse(description="No such store.")},
    )
    def get(self, request):
        store = store_get(slug=store_id_param(request))
        listing = {"store": store, "tasks": task_types_for(store)}
        return Response(self.OutputSerializer(listing).data)


class TaskPerformView(APIView):
    """Perform a task on a store: a job that workers run; poll its task status."""

    role_policy = "tasks"
    permission_classes = [RolePolicy]
    throttle_classes = [UserRateThrottle, SubmitRateThrottle]

    class OutputSerializer(SubmittedJobSerializer):
        task = serializers.CharField(help_text="The task the job performs.")
        storeID = serializers.CharField(source="store.slug", help_text="The store it works on.")

    @extend_schema(
        description="Perform a task: the body is its parameters, a JSON object as the task's "
        "schema in GET /api/v1/tasks/ describes. Answers 202 with the job's task status in "
        "Location; bad parameters are a 400 saying which and why, and nothing is created.",
        parameters=[TASK_NAME, STORE_ID, LOCATION],
        request={"application/json": OpenApiTypes.OBJECT},
        examples=[
            OpenApiExample("noop (any body)", value={}, request_only=True),
            OpenApiExample(
                "checksum",
                value={"paths": ["run1/reads.fastq"], "algorithm": "md5"},
                request_only=True,
            ),
        ],
        responses={
            202: OpenApiResponse(OutputSerializer, "Accepted: poll the Location."),
            404: OpenApiResponse(description="No such store, or files it does not have."),
            409: OpenApiResponse(
                description="A restore of the item is in progress, or a job to release is "
                "still at work."
            ),
        },
    )
    def post(self, request, task_name: str):
        store = store_get(slug=store_id_param(request))
        job = task_perform(
            owner=request.user,
            store=store,
            task_name=task_name,
            source="api",
            parameters=request.data,
        )
        body = self.OutputSerializer(job, context={"request": request}).data
        return Response(body, status=202, headers={"Location": status_uri(request, job.uuid)})
