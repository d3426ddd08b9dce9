"""Webhook endpoints and their deliveries, each delivery with its attempts inline; "send again"
puts chosen deliveries back in the queue. Secrets are never shown."""

from urllib.parse import urlsplit

from django.contrib import admin
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html

from staging.admin.base import ReadOnlyAdmin, job_link
from staging.models_webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from staging.services.webhooks import deliveries_send_again


def _compact(moment) -> str:
    return date_format(timezone.localtime(moment), "m-d H:i:s")


# A delivery's status in the colours of the job statuses (admin.css).
DELIVERY_BADGE = {
    "pending": "status-running",
    "delivered": "status-finished",
    "failed": "status-failed",
}


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["url", "owner", "events", "active", "created"]
    list_filter = ["active"]
    show_facets = admin.ShowFacets.NEVER
    search_fields = ["url", "owner__username"]
    list_select_related = ["owner"]
    # Staff may switch an endpoint off or on; its URL and secrets belong to its owner.
    fields = ["owner", "url", "event_types", "description", "active", "created_at", "rotated"]
    readonly_fields = ["owner", "url", "event_types", "description", "created_at", "rotated"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="created", ordering="created_at")
    def created(self, endpoint):
        return _compact(endpoint.created_at)

    @admin.display(description="events")
    def events(self, endpoint):
        return ", ".join(endpoint.event_types) or "all"

    @admin.display(description="old secret signs until")
    def rotated(self, endpoint):
        return endpoint.previous_secret_valid_until or "—"


class AttemptInline(admin.TabularInline):
    model = WebhookAttempt
    fields = ["at", "status_code", "duration_ms", "error", "response_prefix"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        # Attempts are part of their delivery: whoever may see the delivery sees them.
        return request.user.has_perm("staging.view_webhookdelivery")


@admin.action(description="Send selected deliveries again", permissions=["change"])
def send_again(modeladmin, request, queryset):
    sent = deliveries_send_again(deliveries=queryset)
    modeladmin.message_user(request, f"{sent} deliveries queued to be sent again.")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "event",
        "status_badge",
        "attempts",
        "target_host",
        "job_id_link",
        "next_attempt",
    ]
    # No room for more at 1280 px beside the filters; when it was created is on its page.
    list_filter = ["status", "event"]
    list_select_related = ["job", "endpoint", "callback"]
    search_fields = ["webhook_id", "=job__uuid"]
    ordering = ["-pk"]
    actions = [send_again]
    inlines = [AttemptInline]
    fields = [
        "webhook_id",
        "event",
        "status",
        "attempts",
        "target",
        "job_id_link",
        "created_at",
        "next_attempt_at",
        "delivered_at",
        "payload",
    ]
    readonly_fields = fields

    def has_change_permission(self, request, obj=None):
        # Nobody edits a delivery in a form; "change" is the permission "send again" needs.
        return obj is None and request.user.has_perm("staging.change_webhookdelivery")

    @admin.display(description="status", ordering="status")
    def status_badge(self, delivery):
        return format_html(
            '<span class="badge {}">{}</span>',
            DELIVERY_BADGE.get(delivery.status, ""),
            delivery.get_status_display(),
        )

    @admin.display(description="to")
    def target(self, delivery):
        kind = "endpoint" if delivery.endpoint_id else "job callback"
        return format_html(
            '<span title="{}">{}</span> <small>({})</small>', delivery.url, delivery.url, kind
        )

    @admin.display(description="to")
    def target_host(self, delivery):
        # The host is what tells receivers apart in a list; the whole URL in the tooltip.
        kind = "endpoint" if delivery.endpoint_id else "job callback"
        return format_html(
            '<span title="{} ({})">{}</span>', delivery.url, kind, urlsplit(delivery.url).netloc
        )

    @admin.display(description="next try")
    def next_attempt(self, delivery):
        return _compact(delivery.next_attempt_at) if delivery.next_attempt_at else "—"

    @admin.display(description="job")
    def job_id_link(self, delivery):
        return job_link(delivery.job, short=True)
