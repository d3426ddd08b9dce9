"""Webhook reads: a user's endpoints and their deliveries with attempts."""

from django.db.models import QuerySet

from staging.errors import NotFoundError
from staging.models_webhooks import WebhookDelivery, WebhookEndpoint


def endpoints_list(*, user) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(owner=user).order_by("pk")


def endpoint_get(*, endpoint_id: str, user) -> WebhookEndpoint:
    """One of the user's endpoints; another user's is alike unknown (404)."""
    text = str(endpoint_id)
    # ASCII digits only: str.isdigit also takes '²' and '٣', which int() refuses.
    endpoint = (
        WebhookEndpoint.objects.filter(owner=user, pk=int(text)).first()
        if text.isascii() and text.isdecimal() and len(text) <= 18
        else None
    )
    if endpoint is None:
        raise NotFoundError(f"no webhook with id {endpoint_id}")
    return endpoint


def endpoint_deliveries(*, endpoint: WebhookEndpoint) -> QuerySet[WebhookDelivery]:
    """The endpoint's deliveries, newest first, with their attempts."""
    return (
        WebhookDelivery.objects.filter(endpoint=endpoint)
        .select_related("job")
        .prefetch_related("attempt_rows")
        .order_by("-pk")
    )
