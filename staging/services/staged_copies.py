"""Staged copies as the jobs that pin them see them: the dead temporaries of a sub-job's
directories, and what a verify that finds a copy wrong may do to it while other jobs rely on
it. (Which archive version a copy holds is stamped on its pins by the worker's batch writes.)"""

import logging
import posixpath

from django.db import transaction
from django.utils import timezone

from staging.models import Item, Pin, Store, SubJob
from staging.storage import (
    mark_copy_stale,
    remove_dead_temporaries_beneath,
    resolve_under,
    unlink_beneath,
)

logger = logging.getLogger(__name__)

# The claim (sub-job id, attempt) whose directories this process last cleaned.
_cleaned_for: tuple[int, int] | None = None


def subjob_temporaries_remove(*, subjob: SubJob, store: Store) -> int:
    """Delete the temporaries that dead copiers of this host left in the directories the
    sub-job writes to, once per claim of the sub-job (each directory listed once, however
    many of its files the sub-job stages); returns how many."""
    global _cleaned_for
    claim = (subjob.pk, subjob.attempts)
    if claim == _cleaned_for:
        return 0
    _cleaned_for = claim
    claimed = getattr(subjob, "claimed_items", None)  # read with the claim (execution)
    if claimed is not None:
        paths = [item.path for item in claimed]
    else:
        paths = Item.objects.filter(subjob_id=subjob.pk).values_list("path", flat=True)
    directories = {posixpath.dirname(path) for path in paths}
    removed = remove_dead_temporaries_beneath(store.staging_root, directories)
    if removed:
        logger.info("sub-job %s: removed %s dead temporary files", subjob.pk, removed)
    return removed


def lost_subjob_temporaries_remove(subjob_id: int) -> int:
    """``subjob_temporaries_remove`` for a sub-job whose copier was lost (the reaper took it
    back, or a redelivery found its job being cancelled): no run of it may follow to clear
    them. A directory that cannot be listed is logged, not raised: the caller goes on with
    its other sub-jobs."""
    subjob = SubJob.objects.select_related("job__store").get(pk=subjob_id)
    try:
        return subjob_temporaries_remove(subjob=subjob, store=subjob.job.store)
    except OSError as exc:
        logger.warning("sub-job %s: dead temporaries not removed: %s", subjob_id, exc)
        return 0


def _live_pins_of_others(item: Item, store: Store):
    return Pin.objects.filter(
        store=store, path=item.path, released_at__isnull=True, expires_at__gt=timezone.now()
    ).exclude(job_id=item.job_id)


def staged_copy_mismatch(*, item: Item, store: Store) -> bool:
    """A verify found the staged copy of ``item`` wrong. Removed when no other job pins it;
    otherwise kept (other jobs may have reported it ready and their clients be reading it) and
    flagged: every pin on it records when, and it no longer passes as staged, so the next job
    that stages the path renames a fresh copy over it. Returns whether it was kept."""
    with transaction.atomic():
        # Job creation pins under this lock: no job can start relying on the copy between the
        # look at the pins and the unlink.
        Store.objects.select_for_update().filter(pk=store.pk).exists()
        shared = _live_pins_of_others(item, store).exists()
        if shared:
            Pin.objects.filter(store=store, path=item.path).update(mismatch_found_at=timezone.now())
            mark_copy_stale(resolve_under(store.staging_root, item.path))
        else:
            unlink_beneath(store.staging_root, item.path)
    logger.warning(
        "staged copy %s:%s does not match the catalogue: %s",
        store.slug,
        item.path,
        "kept for the other jobs that pin it, and flagged" if shared else "removed",
    )
    return shared


def staged_copy_verified(*, item: Item, store: Store) -> None:
    """A verify found the staged copy right: a flag an earlier mismatch left on it is over."""
    Pin.objects.filter(store=store, path=item.path, mismatch_found_at__isnull=False).update(
        mismatch_found_at=None
    )
