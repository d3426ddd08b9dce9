"""Staging-space admission: the free space of each store's staging root, judged against two
watermarks, pauses the store's dispatch before a flood of requests fills the disk (every copy
would then fail), and resumes it once space is back.

- Below ``Store.free_space_low`` the store is *full*: ``staging_full_since`` is set, its waiting
  sub-jobs stay in the database (running ones go on), and its waiting jobs say
  ``staging area full`` (``Job.waiting``: peek, the admin).
- At or above ``Store.free_space_high`` (the low one when blank) it is no longer full; between
  the two it stays as it was, so dispatch does not flap at the edge. The sweeper's deletions
  and released copies count as soon as they are on disk.

Watermarks are bytes (``500000000``, ``50GB``, ``2TiB``; powers of 1024) or a share of the
filesystem (``10%``). A request larger than the whole staging filesystem can never be staged
and is refused at once (413)."""

import logging
import os
from collections.abc import Iterable
from datetime import datetime

from django.db.models import Exists, OuterRef
from django.utils import timezone

from staging.errors import ServiceError
from staging.models import PENDING_STATUSES, Job, Store, SubJob
from staging.space import space_bytes

logger = logging.getLogger(__name__)

STAGING_AREA_FULL = "staging area full"


class RequestTooLargeError(ServiceError):
    status_code = 413
    title = "Content Too Large"


def staging_area_space(root: str) -> tuple[int, int]:
    """Free bytes (for an unprivileged writer) and size of the filesystem holding ``root``."""
    found = os.statvfs(root)
    return found.f_bavail * found.f_frsize, found.f_blocks * found.f_frsize


def staging_space_admit(*, store: Store, size: int) -> None:
    """Refuse with a 413 a request of ``size`` bytes that the store's whole staging area could
    not hold. (A request that fits but finds the area full waits instead.)"""
    try:
        _, total = staging_area_space(store.staging_root)
    except OSError:
        return  # unreadable here: the workers' copies will say why
    if size > total:
        raise RequestTooLargeError(
            f"this request is {size} bytes, more than the whole staging area of store "
            f"{store.slug} ({total} bytes): it could never be staged; split it or ask an "
            "operator for a larger staging area",
            field="size",
            extra={"size": size, "staging_area_bytes": total},
        )


def stores_full(*, now: datetime | None = None, stores: Iterable[Store] | None = None) -> set[int]:
    """The stores whose dispatch is paused for lack of staging space, updating each store's
    ``staging_full_since`` (with hysteresis) and its waiting jobs' ``waiting`` reason.
    ``stores``: every store, when the caller read them already (else one query)."""
    now = now or timezone.now()
    full: set[int] = set()
    if stores is None:
        watched = list(Store.objects.exclude(free_space_low=""))
    else:
        watched = [store for store in stores if store.free_space_low]
    for store in watched:
        try:
            free, total = staging_area_space(store.staging_root)
        except OSError as exc:
            logger.warning("store %s: cannot read its staging area's free space: %s", store, exc)
            continue
        low = space_bytes(store.free_space_low, total)
        high = max(low, space_bytes(store.free_space_high or store.free_space_low, total))
        was_full = store.staging_full_since is not None
        if not was_full and free < low:
            Store.objects.filter(pk=store.pk).update(staging_full_since=now)
            logger.warning(
                "store %s: staging area full, %s bytes free: dispatch paused", store, free
            )
            was_full = True
        elif was_full and free >= high:
            Store.objects.filter(pk=store.pk).update(staging_full_since=None)
            logger.info("store %s: %s bytes free again: dispatch resumed", store, free)
            was_full = False
        if was_full:
            full.add(store.pk)
    if watched:
        _jobs_waiting_mark(full=full, others={s.pk for s in watched} - full)
    return full


def _jobs_waiting_mark(*, full: set[int], others: set[int]) -> None:
    """Active jobs with sub-jobs waiting on a full store say so; those on the other watched
    stores no longer do (an ended job's reason is never shown)."""
    active = Job.objects.filter(status__in=PENDING_STATUSES)
    waiting = SubJob.objects.filter(job=OuterRef("pk"), dispatched_at__isnull=True)
    active.filter(store_id__in=full).filter(Exists(waiting)).exclude(
        waiting=STAGING_AREA_FULL
    ).update(waiting=STAGING_AREA_FULL)
    active.filter(store_id__in=others, waiting=STAGING_AREA_FULL).update(waiting="")
