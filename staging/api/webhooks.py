"""API v1 webhooks: a caller's endpoints (register, list, change, delete, rotate the secret) and
each endpoint's deliveries with their attempts. Another user's endpoint is unknown (404)."""

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from staging.api.fields import StrictStringField, validated
from staging.api.pagination import CursorPagination, PaginatedView
from staging.api.permissions import RolePolicy
from staging.api.throttling import UserRateThrottle
from staging.models_webhooks import WebhookEvent
from staging.selectors_webhooks import endpoint_deliveries, endpoint_get, endpoints_list
from staging.services.webhooks import (
    endpoint_create,
    endpoint_delete,
    endpoint_rotate,
    endpoint_update,
)

WEBHOOK_ID = OpenApiParameter(
    "webhook_id", int, OpenApiParameter.PATH, description="Webhook endpoint id."
)
NOT_YOURS = OpenApiResponse(description="No such webhook endpoint of yours.")
BAD_ENDPOINT = OpenApiResponse(
    description="Not an http(s) URL, a host this service will not call (private, loopback, "
    "link-local, …), or an unknown event type."
)
POLICY = {
    "GET": "jobs_read",
    "POST": "jobs_submit",
    "PATCH": "jobs_submit",
    "DELETE": "jobs_submit",
}


def api_base(request) -> str:
    """The service's root as the caller reached it: status URIs in events are built on it."""
    return request.build_absolute_uri("/")


class EndpointSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The endpoint's id.")
    url = serializers.URLField(help_text="Where events are POSTed.")
    event_types = serializers.ListField(
        child=serializers.CharField(), help_text="Events sent here; empty: all of them."
    )
    description = serializers.CharField(help_text="What the endpoint is for (free text).")
    active = serializers.BooleanField(
        help_text="False once the receiver answered 410 Gone (or it was switched off)."
    )
    previous_secret_valid_until = serializers.DateTimeField(
        allow_null=True,
        help_text="After a rotation: until when the old secret signs too (a second signature).",
    )
    created_at = serializers.DateTimeField(help_text="When it was registered.")


class EndpointWithSecretSerializer(EndpointSerializer):
    secret = serializers.CharField(
        help_text="whsec_… (Standard Webhooks): shown in this answer only; keep it."
    )


class EndpointInputSerializer(serializers.Serializer):
    url = serializers.URLField(
        max_length=2000,
        help_text="An http(s) URL whose host resolves to public addresses only.",
    )
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEvent.values),
        required=False,
        default=list,
        help_text="Any of " + ", ".join(WebhookEvent.values) + "; empty or absent: all.",
    )
    description = StrictStringField(
        required=False,
        default="",
        max_length=500,
        allow_blank=True,
        help_text="What the endpoint is for (free text).",
    )
    active = serializers.BooleanField(
        required=False, default=True, help_text="False: send nothing here until set again."
    )


class AttemptSerializer(serializers.Serializer):
    at = serializers.DateTimeField(help_text="When it was tried.")
    status_code = serializers.IntegerField(
        allow_null=True, help_text="The receiver's HTTP status, or null when none came."
    )
    duration_ms = serializers.IntegerField(help_text="How long the attempt took.")
    error = serializers.CharField(help_text="Why no answer came (timeout, refused, …).")
    response_prefix = serializers.CharField(help_text="The answer's first 256 bytes at most.")


class DeliverySerializer(serializers.Serializer):
    webhook_id = serializers.CharField(help_text="The webhook-id header, the same every attempt.")
    event = serializers.CharField(help_text="The event type, e.g. job.finished.")
    jobId = serializers.UUIDField(source="job.uuid", help_text="The job the event is about.")
    status = serializers.CharField(help_text="pending, delivered or failed (given up).")
    attempts = AttemptSerializer(
        source="attempt_rows.all", many=True, help_text="Every try so far, oldest first."
    )
    next_attempt_at = serializers.DateTimeField(
        allow_null=True, help_text="When it is tried next while pending, else null."
    )
    created_at = serializers.DateTimeField(help_text="When the event happened.")
    delivered_at = serializers.DateTimeField(
        allow_null=True, help_text="When a 2xx answer came, or null."
    )
    payload = serializers.DictField(help_text="The body sent.")


class DeliveryCursorPagination(CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class WebhookListView(APIView):
    """The caller's webhook endpoints, and registering one."""

    role_policy = POLICY
    permission_classes = [RolePolicy]
    throttle_classes = [UserRateThrottle]

    @extend_schema(responses={200: EndpointSerializer(many=True)})
    def get(self, request):
        return Response(EndpointSerializer(endpoints_list(user=request.user), many=True).data)

    @extend_schema(
        request=EndpointInputSerializer,
        responses={
            201: OpenApiResponse(EndpointWithSecretSerializer, "Registered; the secret once."),
            400: BAD_ENDPOINT,
        },
    )
    def post(self, request):
        data = validated(EndpointInputSerializer, request.data)
        data.pop("active")
        endpoint = endpoint_create(owner=request.user, api_base=api_base(request), **data)
        return Response(EndpointWithSecretSerializer(endpoint).data, status=status.HTTP_201_CREATED)


class WebhookDetailView(APIView):
    """One endpoint: read, change (PATCH any of url, event_types, description, active), delete."""

    role_policy = POLICY
    permission_classes = [RolePolicy]
    throttle_classes = [UserRateThrottle]

    @extend_schema(parameters=[WEBHOOK_ID], responses={200: EndpointSerializer, 404: NOT_YOURS})
    def get(self, request, webhook_id: str):
        return Response(
            EndpointSerializer(endpoint_get(endpoint_id=webhook_id, user=request.user)).data
        )

    @extend_schema(
        parameters=[WEBHOOK_ID],
        request=EndpointInputSerializer(partial=True),
        responses={200: EndpointSerializer, 400: BAD_ENDPOINT, 404: NOT_YOURS},
    )
    def patch(self, request, webhook_id: str):
        endpoint = endpoint_get(endpoint_id=webhook_id, user=request.user)
        # Partial: only the fields sent are validated and changed (no defaults filled in).
        serializer = EndpointInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        return Response(EndpointSerializer(endpoint_update(endpoint=endpoint, **changes)).data)

    @extend_schema(parameters=[WEBHOOK_ID], responses={204: None, 404: NOT_YOURS})
    def delete(self, request, webhook_id: str):
        endpoint_delete(endpoint=endpoint_get(endpoint_id=webhook_id, user=request.user))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookRotateView(APIView):
    """A new secret, shown once; the old one keeps signing (a second signature in
    webhook-signature) for WEBHOOK_SECRET_ROTATION_HOURS."""

    role_policy = "jobs_submit"
    permission_classes = [RolePolicy]

    @extend_schema(
        parameters=[WEBHOOK_ID],
        request=None,
        responses={200: EndpointWithSecretSerializer, 404: NOT_YOURS},
    )
    def post(self, request, webhook_id: str):
        endpoint = endpoint_rotate(endpoint=endpoint_get(endpoint_id=webhook_id, user=request.user))
        return Response(EndpointWithSecretSerializer(endpoint).data)


class WebhookDeliveriesView(PaginatedView):
    """The endpoint's deliveries, newest first, each with its attempts."""

    role_policy = "jobs_read"
    permission_classes = [RolePolicy]
    pagination_class = DeliveryCursorPagination

    @extend_schema(
        parameters=[WEBHOOK_ID],
        responses={
            200: DeliverySerializer(many=True),
            404: OpenApiResponse(description="No such endpoint of yours, or an invalid cursor."),
        },
    )
    def get(self, request, webhook_id: str):
        endpoint = endpoint_get(endpoint_id=webhook_id, user=request.user)
        return self.paginated(endpoint_deliveries(endpoint=endpoint), DeliverySerializer)
