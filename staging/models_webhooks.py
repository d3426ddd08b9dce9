"""Completion webhooks: endpoints a user registers, one-off callbacks given with one job, the
deliveries owed to them and each attempt at one.

A delivery is written in the same transaction as the job's status change that causes it
(staging.services.transitions), so no event is lost when a process dies right after; a Celery
task on the ``control`` queue sends it, and beat sends again what is due and was never sent::

      PENDING ── 2xx ──────────────────────────────► DELIVERED
         │ ▲
         │ └── anything else: next_attempt_at = now + the next backoff step
         └──── still failing WEBHOOK_GIVE_UP_HOURS after it was created ──► FAILED (gave up)

"Send again" (admin, API) puts a delivered or failed delivery back to PENDING, due now.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


def new_webhook_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


class WebhookEvent(models.TextChoices):
    JOB_STARTED = "job.started", "job.started"
    JOB_FINISHED = "job.finished", "job.finished"
    JOB_FAILED = "job.failed", "job.failed"
    JOB_PARTIALLY_FAILED = "job.partially_failed", "job.partially_failed"
    JOB_CANCELLED = "job.cancelled", "job.cancelled"
    PIN_EXPIRING = "pin.expiring", "pin.expiring"


class WebhookEndpoint(models.Model):
    """A URL of one user's that is told about that user's jobs, signed with its secret."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField("URL", max_length=2000, help_text="Where the events are POSTed.")
    event_types = models.JSONField(
        default=list, blank=True, help_text="The events sent here; empty: every event."
    )
    description = models.CharField(max_length=500, blank=True)
    secret = models.CharField(max_length=100, help_text="whsec_ + base64: signs every delivery.")
    previous_secret = models.CharField(
        max_length=100, blank=True, help_text="The secret before the last rotation."
    )
    previous_secret_valid_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Until then deliveries carry a signature by the previous secret too.",
    )
    active = models.BooleanField(
        default=True, help_text="Inactive endpoints get nothing (410 Gone from it sets this)."
    )
    api_base = models.URLField(
        max_length=500, help_text="The service's URL as the owner reached it (for status URIs)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        verbose_name = "webhook endpoint"

    def __str__(self):
        return self.url

    def wants(self, event: str) -> bool:
        return not self.event_types or event in self.event_types


class JobCallback(models.Model):
    """A one-off URL given with one job (``"callback": {"url": …}``): told about that job only,
    signed with a secret of its own that the submit answer showed once."""

    job = models.OneToOneField("staging.Job", on_delete=models.CASCADE, related_name="callback")
    url = models.URLField("URL", max_length=2000)
    secret = models.CharField(max_length=100)
    api_base = models.URLField(max_length=500)

    def __str__(self):
        return self.url


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (gave up)"


class WebhookDelivery(models.Model):
    """One event owed to one endpoint or job callback (see the module docstring)."""

    endpoint = models.ForeignKey(
        WebhookEndpoint,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="deliveries",
    )
    callback = models.ForeignKey(
        JobCallback, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries"
    )
    job = models.ForeignKey(
        "staging.Job", on_delete=models.CASCADE, related_name="webhook_deliveries"
    )
    event = models.CharField(max_length=32, choices=WebhookEvent.choices)
    webhook_id = models.CharField(
        "webhook-id",
        max_length=64,
        unique=True,
        default=new_webhook_id,
        help_text="Same on every attempt.",
    )
    payload = models.JSONField(help_text="The body sent, the same on every attempt.")
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-pk"]
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.CheckConstraint(
                condition=Q(endpoint__isnull=False) | Q(callback__isnull=False),
                name="webhook_delivery_has_a_target",
            ),
            # pin.expiring is sent once per job and target, whatever beat passes find it.
            models.UniqueConstraint(
                fields=["endpoint", "job"],
                condition=Q(event="pin.expiring"),
                name="webhook_pin_expiring_once_per_endpoint",
            ),
            models.UniqueConstraint(
                fields=["callback", "job"],
                condition=Q(event="pin.expiring"),
                name="webhook_pin_expiring_once_per_callback",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="webhook_delivery_due",
            )
        ]

    def __str__(self):
        return f"{self.event} {self.webhook_id}"

    @property
    def url(self) -> str:
        return self.endpoint.url if self.endpoint_id else self.callback.url


class WebhookAttempt(models.Model):
    """One try at sending a delivery: what the receiver answered, or why nothing came back."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_rows"
    )
    at = models.DateTimeField(auto_now_add=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    response_prefix = models.CharField(
        max_length=256, blank=True, help_text="The first bytes of the answer, no more."
    )

    class Meta:
        ordering = ["pk"]

    def __str__(self):
        return f"{self.status_code or self.error[:40]} at {self.at:%Y-%m-%d %H:%M:%S}"
