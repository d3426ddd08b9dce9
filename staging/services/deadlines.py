"""Deadlines: how long a job may take before it gives up, as FTS3's ``bring_online`` timeout.

A job's ``deadline_at`` is absolute: its creation plus the duration the request gave (API v1
``deadline``, the tape API's ``targetedMetadata.<sitename>.deadline``), else plus its store's
``default_deadline`` (the only one a DTS request gets), so a check is one comparison. Items
not on disk by then end FAILED with ``deadline exceeded``, wherever they are:

- waiting in the database or queued in the broker (sub-jobs NOT_STARTED): the pass below,
  run with every dispatch pass (beat and wakes), fails them in bulk and rolls their jobs up;
  a message still in the broker then finds its sub-job over and does nothing;
- running: the worker checks between files and between chunks of a copy
  (``staging.services.execution``) and fails the sub-job's remaining items in its batch write.

Items already FINISHED stay finished, so a job that was partly done ends PARTIALLY_FAILED.
"""

import logging
from datetime import timedelta

from django.db.models import Exists, OuterRef
from django.db.models.functions import Now
from django.utils.dateparse import parse_duration

from staging.errors import ServiceError
from staging.models import PENDING_STATUSES, Job, JobStatus, SubJob
from staging.services import transitions

logger = logging.getLogger(__name__)

DEADLINE_EXCEEDED = "deadline exceeded"
# Longer than any staging request should wait, short enough that no date overflows.
MAX_DEADLINE = timedelta(days=366)
DEADLINE_FORMS = "a positive whole number of seconds (3600) or an ISO 8601 duration (PT2H, P1D)"
# Jobs past their deadline settled per pass (the next pass takes the rest).
EXPIRE_BATCH = 500


def deadline_parse(raw, *, field: str = "deadline") -> timedelta:
    """A deadline as a client or an operator writes it: whole seconds (a JSON integer, or
    digits in a query string or on a command line) or an ISO 8601 duration of days, hours,
    minutes and seconds. Anything else is a ServiceError naming ``field`` and the forms."""
    duration = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        duration = _seconds(raw)
    elif isinstance(raw, str) and raw.isascii() and raw.isdecimal():
        duration = _seconds(int(raw))
    elif isinstance(raw, str) and raw[:1] in ("P", "p") and raw.upper() not in ("P", "PT"):
        try:
            duration = parse_duration(raw.upper())
        except OverflowError:
            duration = MAX_DEADLINE * 2
    if duration is None or duration <= timedelta(0):
        raise ServiceError(f"{field} must be {DEADLINE_FORMS}, not {raw!r}", field=field)
    if duration > MAX_DEADLINE:
        raise ServiceError(
            f"{field} may be at most {MAX_DEADLINE.days} days (P{MAX_DEADLINE.days}D), not {raw!r}",
            field=field,
        )
    return duration


def _seconds(count: int) -> timedelta | None:
    # Checked before the timedelta is made: a number of 400 digits would overflow it.
    too_long = count > MAX_DEADLINE.total_seconds()
    return MAX_DEADLINE * 2 if too_long else timedelta(seconds=count)


def deadline_columns(job: Job, deadline: timedelta | None) -> dict:
    """The job's ``deadline_at`` for a request that named a deadline, as UPDATE values ({} for
    one that did not: the job keeps its store's default, if any)."""
    return {} if deadline is None else {"deadline_at": job.created_at + deadline}


def jobs_past_deadline_fail(*, batch: int = EXPIRE_BATCH) -> int:
    """Fail the waiting and queued work of active jobs whose deadline has passed (by the
    database's clock), a few statements for a whole batch of jobs, and roll the jobs up (a job
    with a sub-job still running is rolled up by its worker, which stops at the deadline too).
    Returns how many sub-jobs failed."""
    queued = SubJob.objects.filter(job=OuterRef("pk"), status=JobStatus.NOT_STARTED)
    expired = list(
        Job.objects.filter(deadline_at__lte=Now(), status__in=PENDING_STATUSES)
        .filter(Exists(queued))
        .order_by("deadline_at")
        .values_list("pk", flat=True)[:batch]
    )
    if not expired:
        return 0
    failed = transitions.subjobs_fail_past_deadline(job_ids=expired, error=DEADLINE_EXCEEDED)
    for job_id in expired:
        transitions.job_settle(job_id)
    if failed:
        logger.warning("deadline: %s queued sub-jobs of %s jobs failed", failed, len(expired))
    return failed
