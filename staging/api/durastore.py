"""DuraCloud's DuraStore task calls (seed 003): list a store's tasks, perform one.

- ``GET /durastore/task?storeID=`` → 200 ``<list><string>noop</string>…</list>`` (XML), or a
  JSON list with ``Accept: application/json``; no storeID → the primary store; unknown → 404.
- ``POST /durastore/task/{taskName}?storeID=`` with the task's parameters as the raw body →
  200 ``text/plain`` with the task's text, and ``Location:`` the job's task status.

Errors are ``text/plain`` with the message alone, as DuraStore answers them (``restore-content
is not a supported task.``, ``Restore is already in progress for space/content``): clients of
this dialect read the body as text."""

from xml.sax.saxutils import escape

from django.core.exceptions import RequestDataTooBig
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from staging.api.job_output import LOCATION, status_uri
from staging.api.permissions import RolePolicy
from staging.api.tasks import STORE_ID, TASK_NAME, store_id_param
from staging.api.throttling import SubmitRateThrottle, UserRateThrottle
from staging.catalogue import task_types_for
from staging.errors import ServiceError
from staging.selectors import store_get
from staging.services.tasks import task_perform, task_response_text

TEXT = "text/plain; charset=utf-8"


class PlainTextRenderer(BaseRenderer):
    media_type = "text/plain"
    format = "txt"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return ("" if data is None else str(data)).encode(self.charset)


class XmlStringListRenderer(BaseRenderer):
    """A list of strings as DuraStore writes it: ``<list><string>…</string></list>``."""

    media_type = "application/xml"
    format = "xml"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        strings = "".join(f"<string>{escape(str(value))}</string>" for value in data or [])
        return f"<list>{strings}</list>".encode(self.charset)


class FirstAcceptedNegotiation(BaseContentNegotiation):
    """The first media type of ``Accept`` that a renderer produces, else the first renderer:
    DuraStore answers in its own format rather than 406 when a client asks for another."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        accepted = [
            part.split(";")[0].strip().lower()
            for part in request.META.get("HTTP_ACCEPT", "").split(",")
        ]
        for media_type in accepted:
            for renderer in renderers:
                if renderer.media_type == media_type:
                    return renderer, renderer.media_type
        return renderers[0], renderers[0].media_type


class BodyTooLarge(ServiceError):
    status_code = 413
    title = "Content Too Large"


class DuraStoreView(APIView):
    role_policy = "tasks"
    permission_classes = [RolePolicy]
    content_negotiation_class = FirstAcceptedNegotiation

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        data = response.data
        response.data = data.get("detail", "") if isinstance(data, dict) else str(data)
        response.content_type = TEXT
        return response

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if response.status_code >= 400:
            response.accepted_renderer = PlainTextRenderer()
            response.accepted_media_type = PlainTextRenderer.media_type
        return response


class DuraStoreTaskListView(DuraStoreView):
    renderer_classes = [XmlStringListRenderer, JSONRenderer]

    @extend_schema(
        description="The tasks a store supports, by name, as DuraStore lists them: XML "
        "(<list><string>noop</string></list>), or JSON with Accept: application/json. Errors "
        "are text/plain.",
        parameters=[STORE_ID],
        responses={
            (200, "application/xml"): OpenApiResponse(
                OpenApiTypes.STR,
                "The task names as <list><string>name</string>...</list>.",
                examples=[OpenApiExample("posix", value="<list><string>noop</string></list>")],
            ),
            (200, "application/json"): OpenApiResponse(
                {"type": "array", "items": {"type": "string", "description": "A task name."}},
                "The task names.",
            ),
            404: OpenApiResponse(description="No such store."),
        },
    )
    def get(self, request):
        store = store_get(slug=store_id_param(request))
        return Response([task.name for task in task_types_for(store)])


class DuraStoreTaskView(DuraStoreView):
    renderer_classes = [PlainTextRenderer]
    throttle_classes = [UserRateThrottle, SubmitRateThrottle]
    parser_classes = []  # the body is the task's own text, read raw

    @extend_schema(
        description="Perform a task, DuraStore's way: the body is the task's parameters as "
        "text (a JSON object, or one path per line); 200 with the task's text and Location: "
        "the job's task status. Errors are text/plain with the message alone.",
        parameters=[TASK_NAME, STORE_ID, LOCATION],
        request={"text/plain": OpenApiTypes.STR},
        responses={
            (200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, "The task's answer."),
            404: OpenApiResponse(description="No such store, or files it does not have."),
            409: OpenApiResponse(description="A restore of the item is in progress."),
        },
    )
    def post(self, request, task_name: str):
        store = store_get(slug=store_id_param(request))
        try:
            raw = request.body
        except RequestDataTooBig as exc:
            raise BodyTooLarge("the request body is too large") from exc
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ServiceError("the request body is not UTF-8 text") from exc
        job = task_perform(
            owner=request.user, store=store, task_name=task_name, source="durastore", text=text
        )
        return Response(
            task_response_text(job),
            headers={"Location": status_uri(request, job.uuid)},
            content_type=TEXT,
        )
