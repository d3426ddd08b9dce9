"""The task catalogue in API v1: a store's tasks with their parameter schemas, and performing
one, which answers 202 Accepted with ``Location:`` the job's task status (seed 001)."""

from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from staging.api.permissions import RolePolicy
from staging.models import Job
from staging.selectors import store_get
from staging.services.tasks import task_perform
from tasks.catalogue import task_types_for


def store_id_param(request) -> str | None:
    """``?storeID=`` as DuraCloud spells it; absent or empty means the primary store."""
    return request.query_params.get("storeID") or None


def task_status_uri(request, job: Job) -> str:
    """The job's status monitor in API v1 (GET /api/v1/task_status/{jobId}, …/peek)."""
    return request.build_absolute_uri(f"/api/v1/task_status/{job.uuid}")


def job_results_uri(request, job: Job) -> str:
    return request.build_absolute_uri(f"/api/v1/jobs/{job.uuid}/result")


class TaskListView(APIView):
    """The tasks a store supports (``?storeID=``, default the primary store)."""

    role_policy = "tasks"
    permission_classes = [RolePolicy]

    class OutputSerializer(serializers.Serializer):
        name = serializers.CharField(help_text="The task name, for POST /api/v1/tasks/{name}/.")
        description = serializers.CharField()
        parameters = serializers.SerializerMethodField(
            help_text="JSON Schema of the task's parameters (the POST body)."
        )

        def get_parameters(self, task) -> dict:
            return task.schema()

    def get(self, request):
        store = store_get(slug=store_id_param(request))
        tasks = self.OutputSerializer(task_types_for(store), many=True).data
        return Response({"storeID": store.slug, "kind": store.kind, "tasks": tasks})


class TaskPerformView(APIView):
    """Perform a task on a store: the body is the task's parameters (a JSON object)."""

    role_policy = "tasks"
    permission_classes = [RolePolicy]

    class OutputSerializer(serializers.Serializer):
        jobId = serializers.UUIDField(source="uuid")
        task = serializers.CharField()
        storeID = serializers.CharField(source="store.slug")
        status = serializers.CharField()
        statusuri = serializers.SerializerMethodField()
        resultsuri = serializers.SerializerMethodField()

        def get_statusuri(self, job) -> str:
            return task_status_uri(self.context["request"], job)

        def get_resultsuri(self, job) -> str:
            return job_results_uri(self.context["request"], job)

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
        return Response(body, status=202, headers={"Location": body["statusuri"]})
