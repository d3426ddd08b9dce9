"""Checksums in the catalogue: record what a worker computed, and verify staged copies against
what the catalogue holds."""

import logging
from collections.abc import Callable

from django.conf import settings

from staging.checksum_algorithms import ALGORITHMS, file_checksum
from staging.models import File, Item, Store
from staging.services.execution import ItemFailed, item_result_record
from staging.services.staged_copies import staged_copy_mismatch, staged_copy_verified
from staging.storage import resolve_under

logger = logging.getLogger(__name__)


def file_checksum_record(*, file_id: str | None, size: int, algorithm: str, value: str) -> bool:
    """Store a checksum on a catalogue entry, unless the entry changed meanwhile (a scan saw a
    new size, so the checksum describes content the catalogue no longer has)."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown checksum algorithm {algorithm!r}")
    if file_id is None:
        return False
    return bool(File.objects.filter(pk=file_id, size=size).update(**{algorithm: value}))


def _catalogue_checksum(file_id: str | None) -> tuple[str, str] | None:
    """The strongest checksum the catalogue holds for the file, as (algorithm, hex)."""
    if file_id is None:
        return None
    row = File.objects.filter(pk=file_id).values(*ALGORITHMS).first() or {}
    for algorithm in ALGORITHMS:
        if row.get(algorithm):
            return algorithm, row[algorithm]
    return None


def staged_copy_verify(
    *,
    item: Item,
    store: Store,
    should_stop: Callable[[], bool],
    keep_alive: Callable[[], None] = lambda: None,
) -> dict:
    """Compare the staged copy of ``item`` with the catalogue's checksum (computed from the
    archive and recorded first when the catalogue has none). A mismatch fails the item for
    good and removes the copy, or, when other jobs pin it, keeps and flags it
    (``staged_copy_mismatch``); a match is recorded on the item.
    ``keep_alive`` is called after every chunk read: reading a big file takes a while, and the
    worker's lease must be renewed meanwhile."""
    reading = {
        "chunk_bytes": settings.STAGING["COPY_CHUNK_BYTES"],
        "on_progress": lambda count: keep_alive(),
        "should_stop": should_stop,
    }
    known = _catalogue_checksum(item.file_id)
    if known is None:
        source = resolve_under(store.archive_root, item.path)
        value, read = file_checksum(source, "sha256", **reading)
        file_checksum_record(file_id=item.file_id, size=read, algorithm="sha256", value=value)
        known = ("sha256", value)
    algorithm, expected = known
    staged = resolve_under(store.staging_root, item.path)
    actual, _ = file_checksum(staged, algorithm, **reading)
    if actual != expected:
        kept = staged_copy_mismatch(item=item, store=store)
        raise ItemFailed(
            f"checksum mismatch: the staged copy's {algorithm} is {actual}, the catalogue says "
            f"{expected}; "
            + (
                "the copy was kept, as other jobs pin it, and flagged: the next request "
                "for it copies it again"
                if kept
                else "the copy was removed"
            )
        )
    staged_copy_verified(item=item, store=store)
    result = {"algorithm": algorithm, "checksum": actual}
    item_result_record(item_id=item.pk, result=result)
    return result
