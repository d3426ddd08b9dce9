"""Periodic repairs on the ``control`` queue, scheduled by beat."""

from dataclasses import asdict

from celery import shared_task
from django.conf import settings
from django.db import connection

from staging.services.deadlines import jobs_past_deadline_fail
from staging.services.dispatch import dispatch_woken
from staging.services.recovery import (
    jobs_janitor,
    staged_copies_sweep,
    subjobs_reap_expired,
    subjobs_reconcile,
)
from staging.services.retention import jobs_purge
from staging.services.webhooks import (
    CLAIM_MARGIN_SECONDS,
    deliveries_resend_due,
    delivery_send,
    pins_expiring_notify,
)


# No result row: a pass runs every few seconds and after every submission.
@shared_task(ignore_result=True)
def dispatch_waiting_subjobs() -> dict:
    """Fail the queued work of jobs past their deadline (their slots free at once), then hand
    the broker the waiting sub-jobs that capacity allows (woken, and on beat)."""
    expired = jobs_past_deadline_fail()
    return {"past_deadline": expired, "dispatched": dispatch_woken()}


@shared_task
def reap_expired_leases() -> dict:
    return asdict(subjobs_reap_expired())


@shared_task
def reconcile_lost_subjobs() -> dict:
    return {"republished": subjobs_reconcile()}


@shared_task
def janitor() -> dict:
    """Settle every job or sub-job a crash or a race left in a state nothing else would move."""
    return asdict(jobs_janitor())


@shared_task
def sweep_unpinned_copies() -> dict:
    return {"removed": staged_copies_sweep()}


@shared_task
def purge_old_jobs() -> dict:
    """Retention: delete jobs older than STAGING_RETENTION_DAYS (see staging.services.retention)."""
    return asdict(jobs_purge())


# Sent on the webhooks queue (CELERY_TASK_ROUTES) to a worker of its own; the delivery row is
# the record, so no result row. post() ends every attempt within WEBHOOK_ATTEMPT_SECONDS; the
# time limits are a backstop where the pool enforces them (prefork; a thread pool does not).
@shared_task(
    ignore_result=True,
    soft_time_limit=settings.WEBHOOK_ATTEMPT_SECONDS + CLAIM_MARGIN_SECONDS / 2,
    time_limit=settings.WEBHOOK_ATTEMPT_SECONDS + CLAIM_MARGIN_SECONDS,
)
def webhook_send(delivery_id: int) -> str | None:
    try:
        return delivery_send(delivery_id)
    finally:
        # A thread pool keeps each thread's connection; sends are few and far between, so
        # none is held idle by a sender thread between them.
        connection.close()


@shared_task(ignore_result=True)
def resend_due_webhooks() -> dict:
    return {"published": deliveries_resend_due()}


@shared_task(ignore_result=True)
def notify_expiring_pins() -> dict:
    return {"jobs": pins_expiring_notify()}
