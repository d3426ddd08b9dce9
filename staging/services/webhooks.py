"""Webhook writes: endpoints (register, change, rotate, delete), a job's one-off callback, the
deliveries a job's status change owes (written in that change's transaction), sending one, and
the beat passes that send again what is due and warn of expiring pins. See
staging.models_webhooks for a delivery's states and staging.webhook_http for the wire."""

import json
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, Min, OuterRef, Q
from django.utils import timezone

from staging.errors import ServiceError
from staging.models import Job, JobStatus, Pin
from staging.models_webhooks import (
    DeliveryStatus,
    JobCallback,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from staging.webhook_http import post, secret_new, signature_header, url_checked

logger = logging.getLogger(__name__)

SEND_TASK = "tasks.maintenance.webhook_send"
EVENT_OF_STATUS = {
    JobStatus.RUNNING: WebhookEvent.JOB_STARTED,
    JobStatus.FINISHED: WebhookEvent.JOB_FINISHED,
    JobStatus.FAILED: WebhookEvent.JOB_FAILED,
    JobStatus.PARTIALLY_FAILED: WebhookEvent.JOB_PARTIALLY_FAILED,
    JobStatus.CANCELLED: WebhookEvent.JOB_CANCELLED,
}
# Jobs whose staged copies are ready, and so have pins that can expire.
_READY = (JobStatus.FINISHED, JobStatus.PARTIALLY_FAILED)
# A pass of beat sends again at most this many due deliveries, and warns of at most this many
# jobs' expiring pins: bounded work, the rest next pass.
PASS_LIMIT = 500
WEBHOOKS_QUEUE = "webhooks"
# The claim outlasts an attempt's bound (WEBHOOK_ATTEMPT_SECONDS) by this much: the database
# writes before and after the POST.
CLAIM_MARGIN_SECONDS = 30


def _event_types_checked(event_types: list[str]) -> list[str]:
    unknown = [e for e in event_types if e not in WebhookEvent.values]
    if unknown:
        raise ServiceError(
            f"unknown event types {', '.join(unknown)}; known: {', '.join(WebhookEvent.values)}",
            field="event_types",
        )
    return list(dict.fromkeys(event_types))


# --- Endpoints --------------------------------------------------------------------------------


def endpoint_create(
    *, owner, url: str, event_types: list[str], description: str, api_base: str
) -> WebhookEndpoint:
    """Register a receiver of ``owner``'s job events; its secret is on the returned object (the
    only time it is shown)."""
    url_checked(url)
    return WebhookEndpoint.objects.create(
        owner=owner,
        url=url,
        event_types=_event_types_checked(event_types),
        description=description,
        secret=secret_new(),
        api_base=api_base,
    )


def endpoint_update(*, endpoint: WebhookEndpoint, **changes) -> WebhookEndpoint:
    if "url" in changes:
        url_checked(changes["url"])
    if "event_types" in changes:
        changes["event_types"] = _event_types_checked(changes["event_types"])
    for name, value in changes.items():
        setattr(endpoint, name, value)
    endpoint.save(update_fields=list(changes))
    return endpoint


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    endpoint.delete()


def endpoint_rotate(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """A new secret (shown once); deliveries carry a signature by the old one too for
    WEBHOOK_SECRET_ROTATION_HOURS, so receivers can switch over without losing one."""
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_valid_until = timezone.now() + timedelta(
        hours=settings.WEBHOOK_SECRET_ROTATION_HOURS
    )
    endpoint.secret = secret_new()
    endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_valid_until"])
    return endpoint


def job_callback_check(url: str) -> None:
    """Refuse (400) a job's callback URL that may not be called. Before the transaction that
    creates the job: resolving its host may take a resolver's timeout, and that transaction
    holds the owner's, the store's and possibly the dispatcher's locks."""
    url_checked(url, field="callback")


def job_callback_create(*, job: Job, url: str, api_base: str) -> JobCallback:
    """The one-off callback of one job, with a secret of its own (shown once, in the submit
    answer), its URL checked by ``job_callback_check``. Call it in the transaction that creates
    the job, before its work can start."""
    return JobCallback.objects.create(job=job, url=url, secret=secret_new(), api_base=api_base)


# --- Deliveries owed --------------------------------------------------------------------------


class _BaseURL:
    """What the job serializers ask of a request: absolute URIs, here under the URL the
    receiver's owner used to reach the service."""

    def __init__(self, base: str):
        self.base = base.rstrip("/")

    def build_absolute_uri(self, path: str) -> str:
        return self.base + path


# The wire shape of a job lives in one place, the API's serializers, and the domain does not
# import the API: the API hands its shape over when the app starts (staging.apps).
_job_summary: Callable[[Job, Any], dict] | None = None


def job_summary_shape_set(shape: Callable[[Job, Any], dict]) -> None:
    """How a job is shown (``shape(job, request)``), as GET /api/v1/jobs/ lists it."""
    global _job_summary
    _job_summary = shape


def job_payload(*, job: Job, event: str, api_base: str, extra: dict | None = None) -> dict:
    """The body of a job event: the job as GET /api/v1/jobs/ lists it (with its status URI)."""
    data = _job_summary(job, _BaseURL(api_base))
    return {
        "type": event,
        "timestamp": timezone.now().isoformat(),
        "data": {**data, **(extra or {})},
    }


def _targets(job_id: int, event: str) -> tuple[list[WebhookEndpoint], JobCallback | None]:
    endpoints = [
        e
        for e in WebhookEndpoint.objects.filter(
            active=True, owner__staging_jobs__pk=job_id
        ).order_by("pk")
        if e.wants(event)
    ]
    callback = JobCallback.objects.filter(job_id=job_id).first()
    return endpoints, callback


def job_listened(job: str = "pk"):
    """An expression: whether anything listens to the job that ``job`` leads to from the
    queried row (an active endpoint of its owner, or its callback). Annotated on a query a
    caller makes anyway, it costs no round trip of its own."""
    owner = "owner" if job == "pk" else f"{job}__owner"
    return Exists(WebhookEndpoint.objects.filter(owner=OuterRef(owner), active=True)) | Exists(
        JobCallback.objects.filter(job=OuterRef(job))
    )


def job_has_webhook_targets(job_id: int) -> bool:
    """Whether anything listens to this job: one query, so a job nobody listens to pays no
    more than that for an event."""
    return Job.objects.filter(job_listened(), pk=job_id).exists()


def deliveries_for_job_status(job_id: int, status: str, *, listened: bool | None = None) -> int:
    """The deliveries a job's move to ``status`` owes its owner's endpoints and its callback.
    Called by staging.services.transitions inside the transaction of the move, so they are
    committed with it or not at all; sending is published once it commits. ``listened``:
    whether anything listens, when the caller read it already (else one query here)."""
    event = EVENT_OF_STATUS.get(status)
    if event is None:
        return 0
    if listened is None:
        listened = job_has_webhook_targets(job_id)
    if not listened:
        return 0
    return _deliveries_create(job_id, event)


def _deliveries_create(job_id: int, event: str, extra: dict | None = None) -> int:
    endpoints, callback = _targets(job_id, event)
    if not endpoints and callback is None:
        return 0
    job = Job.objects.select_related("store", "owner").get(pk=job_id)
    now = timezone.now()

    def delivery(receiver, kind: str) -> WebhookDelivery:
        """To ``receiver``, a registered endpoint or the job's own callback (``kind``)."""
        payload = job_payload(job=job, event=event, api_base=receiver.api_base, extra=extra)
        return WebhookDelivery(
            **{kind: receiver}, job=job, event=event, next_attempt_at=now, payload=payload
        )

    rows = [delivery(e, "endpoint") for e in endpoints]
    if callback is not None:
        rows.append(delivery(callback, "callback"))
    created = WebhookDelivery.objects.bulk_create(rows)
    ids = [d.pk for d in created]
    transaction.on_commit(lambda: deliveries_publish(ids))
    return len(ids)


def deliveries_publish(delivery_ids: list[int], *, countdown: float = 0) -> None:
    """Hand deliveries to the webhooks queue (its own worker: a slow receiver never delays the
    control queue). A lost message is harmless: beat sends what is overdue
    (deliveries_resend_due)."""
    for delivery_id in delivery_ids:
        try:
            current_app.send_task(
                SEND_TASK, args=[delivery_id], queue=WEBHOOKS_QUEUE, countdown=countdown or None
            )
        except Exception:
            logger.warning("could not publish webhook delivery %s; beat will", delivery_id)


# --- Sending ----------------------------------------------------------------------------------


def _secrets_in_force(delivery: WebhookDelivery) -> list[str]:
    if delivery.callback_id:
        return [delivery.callback.secret]
    endpoint = delivery.endpoint
    in_force = [endpoint.secret]
    until = endpoint.previous_secret_valid_until
    if endpoint.previous_secret and until and until > timezone.now():
        in_force.append(endpoint.previous_secret)
    return in_force


def _backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed try: the schedule's steps, then its last."""
    steps = settings.WEBHOOK_BACKOFF_SECONDS
    return timedelta(seconds=steps[min(attempts, len(steps)) - 1])


def _claim_window() -> timedelta:
    """How long a sender holds a delivery it is sending (no other sender takes it meanwhile):
    the whole bound of an attempt, with a margin for the database writes around it."""
    return timedelta(seconds=settings.WEBHOOK_ATTEMPT_SECONDS + CLAIM_MARGIN_SECONDS)


def delivery_send(delivery_id: int) -> str | None:
    """One attempt at a due delivery: claimed by a compare-and-set (a duplicate message does
    nothing), POSTed, its attempt recorded, then DELIVERED, due again after the next backoff
    step, or FAILED once WEBHOOK_GIVE_UP_HOURS have passed. Returns the status, or None when it
    was not due (sent already, or being sent) or the attempt outlived its claim (its outcome is
    then kept as an attempt only)."""
    now = timezone.now()
    claimed_until = now + _claim_window()
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=claimed_until)
    if not claimed:
        return None
    delivery = (
        WebhookDelivery.objects.select_related("endpoint", "callback")
        .filter(pk=delivery_id)
        .first()
    )
    if delivery is None:  # its endpoint was deleted meanwhile, and it with it
        return None
    if delivery.endpoint_id and not delivery.endpoint.active:
        WebhookDelivery.objects.filter(pk=delivery_id).update(
            status=DeliveryStatus.FAILED, next_attempt_at=None
        )
        return DeliveryStatus.FAILED
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    timestamp = int(time.time())
    outcome = post(
        delivery.url,
        body,
        {
            "webhook-id": delivery.webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(
                _secrets_in_force(delivery), delivery.webhook_id, timestamp, body
            ),
        },
    )
    return _attempt_record(delivery, outcome, claimed_until=claimed_until)


@transaction.atomic
def _attempt_record(delivery: WebhookDelivery, outcome, *, claimed_until) -> str | None:
    """Keep the attempt, and move the delivery on only while this sender still holds its claim
    (PENDING, due at ``claimed_until``): an attempt that outlived its claim may have been
    overtaken by another sender or by "send again", whose outcome stands. Returns the
    delivery's new status, or None when the outcome came too late to count."""
    WebhookAttempt.objects.create(
        delivery=delivery,
        status_code=outcome.status_code,
        duration_ms=outcome.duration_ms,
        error=outcome.error,
        response_prefix=outcome.response_prefix,
    )
    now = timezone.now()
    attempts = delivery.attempts + 1
    changes: dict = {"attempts": attempts}
    republish_in = None
    gone = outcome.status_code == 410 and delivery.endpoint_id
    if outcome.ok:
        changes.update(status=DeliveryStatus.DELIVERED, delivered_at=now, next_attempt_at=None)
    else:
        due = now + _backoff(attempts)
        give_up_at = delivery.created_at + timedelta(hours=settings.WEBHOOK_GIVE_UP_HOURS)
        if due > give_up_at:
            changes.update(status=DeliveryStatus.FAILED, next_attempt_at=None)
        else:
            changes["next_attempt_at"] = due
            republish_in = (due - now).total_seconds()
        if gone:
            changes.update(status=DeliveryStatus.FAILED, next_attempt_at=None)
    still_claimed = WebhookDelivery.objects.filter(
        pk=delivery.pk, status=DeliveryStatus.PENDING, next_attempt_at=claimed_until
    ).update(**changes)
    if not still_claimed:
        logger.warning("webhook delivery %s: a late attempt's outcome was not kept", delivery.pk)
        return None
    if gone:
        # 410 Gone: the receiver says it will never want these again.
        WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(active=False)
    elif republish_in is not None:
        transaction.on_commit(lambda: deliveries_publish([delivery.pk], countdown=republish_in))
    return changes.get("status", DeliveryStatus.PENDING)


def deliveries_send_again(*, deliveries) -> int:
    """Put deliveries back to PENDING, due now, and publish them (admin "send again")."""
    ids = list(deliveries.values_list("pk", flat=True))
    WebhookDelivery.objects.filter(pk__in=ids).update(
        status=DeliveryStatus.PENDING, next_attempt_at=timezone.now(), delivered_at=None
    )
    transaction.on_commit(lambda: deliveries_publish(ids))
    return len(ids)


# --- Beat passes ------------------------------------------------------------------------------


def deliveries_resend_due() -> int:
    """Publish deliveries overdue by WEBHOOK_RESEND_AFTER_SECONDS: their message was lost (a
    broker restart) or their worker died mid-send. At most PASS_LIMIT a pass, oldest first."""
    overdue = timezone.now() - timedelta(seconds=settings.WEBHOOK_RESEND_AFTER_SECONDS)
    ids = list(
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=overdue)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:PASS_LIMIT]
    )
    deliveries_publish(ids)
    return len(ids)


def pins_expiring_notify() -> int:
    """pin.expiring, once per job and target, for jobs whose first live pin expires within
    WEBHOOK_PIN_EXPIRING_BEFORE. At most PASS_LIMIT jobs a pass."""
    now = timezone.now()
    soon = now + settings.WEBHOOK_PIN_EXPIRING_BEFORE
    warned = WebhookDelivery.objects.filter(job=OuterRef("pk"), event=WebhookEvent.PIN_EXPIRING)
    has_target = Q(
        Exists(WebhookEndpoint.objects.filter(owner=OuterRef("owner"), active=True))
    ) | Q(Exists(JobCallback.objects.filter(job=OuterRef("pk"))))
    expiring = Pin.objects.filter(
        job=OuterRef("pk"), released_at__isnull=True, expires_at__gt=now, expires_at__lte=soon
    )
    jobs = (
        Job.objects.filter(has_target, Exists(expiring), status__in=_READY)
        .exclude(Exists(warned))
        .values_list("pk", flat=True)[:PASS_LIMIT]
    )
    notified = 0
    for job_id in list(jobs):
        first = Pin.objects.filter(
            job_id=job_id, released_at__isnull=True, expires_at__gt=now
        ).aggregate(at=Min("expires_at"))["at"]
        extra = {"expires_at": first.isoformat() if first else None}
        try:
            with transaction.atomic():
                notified += bool(_deliveries_create(job_id, WebhookEvent.PIN_EXPIRING, extra))
        except IntegrityError:  # a concurrent pass warned first
            continue
    return notified
