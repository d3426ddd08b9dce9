"""Releasing staged copies: a job, or a caller steering several, lets go of its pins on them.
Nothing is deleted here: the sweeper (``staging.services.recovery.staged_copies_sweep``) removes
a copy once no live pin holds it."""

from django.db import transaction
from django.utils import timezone

from staging.models import Job, Pin, Store


@transaction.atomic
def job_release(*, job: Job, paths: list[str] | None = None) -> int:
    """Drop the job's pins (all, or those of ``paths``); the sweeper deletes the staged copies
    once no other job pins them. Returns how many pins were released."""
    pins = Pin.objects.filter(job=job, released_at__isnull=True)
    if paths is not None:
        pins = pins.filter(path__in=paths)
    return pins.update(released_at=timezone.now())


@transaction.atomic
def paths_release(*, store: Store, paths: list[str], jobs) -> int:
    """Drop the pins that ``jobs`` (a queryset: the jobs a caller may steer) hold on ``paths`` of
    ``store``, as ``job_release`` does for one job; returns how many pins were released."""
    pins = Pin.objects.filter(
        store=store, path__in=paths, released_at__isnull=True, job__in=jobs.values("pk")
    )
    return pins.update(released_at=timezone.now())
