"""Where a ``posix-tape`` store's files are on tape: a cartridge (VID) and a position per file,
from the files' extended attributes (read by the scan) or from a tape map the operator gives
(``manage.py tapemap import STORE FILE``: CSV lines ``path,vid,position``)."""

import csv
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from staging.archive_walk import FoundFile
from staging.models import File, Store

VID_XATTR = "user.tape.vid"
POSITION_XATTR = "user.tape.position"
VID_MAX_LENGTH = 64
BATCH = 1000


def tape_location_of(found: FoundFile) -> tuple[str, int | None] | None:
    """(vid, position) from the file's extended attributes, or None when it has no VID (or the
    filesystem keeps none). A position that is not a whole number is left unknown."""
    path = found.target or f"/proc/self/fd/{found.directory_fd}/{found.name}"
    try:
        vid = os.getxattr(path, VID_XATTR, follow_symlinks=False).decode(errors="replace")
    except OSError:
        return None
    vid = vid.strip()[:VID_MAX_LENGTH]
    if not vid:
        return None
    try:
        raw = os.getxattr(path, POSITION_XATTR, follow_symlinks=False).decode().strip()
        position = int(raw) if raw.isdigit() else None
    except (OSError, UnicodeDecodeError):
        position = None
    return vid, position


def tape_locations_record(*, store: Store, locations: dict[str, tuple[str, int | None]]) -> int:
    """Record ``locations`` (path -> (vid, position)) on the store's catalogue entries, which
    exist (the scan wrote them); returns how many were written."""
    rows = [
        File(id=File.id_for(store.slug, path), tape_vid=vid, tape_position=position)
        for path, (vid, position) in locations.items()
    ]
    File.objects.bulk_update(rows, ["tape_vid", "tape_position"], batch_size=BATCH)
    return len(rows)


@dataclass
class TapeMapSummary:
    recorded: int = 0
    unknown_paths: list[str] = field(default_factory=list)
    bad_lines: list[str] = field(default_factory=list)  # "line N: what is wrong"


def tape_map_import(*, store: Store, lines: Iterable[str]) -> TapeMapSummary:
    """Read a tape map (CSV ``path,vid,position``; a first line ``path,vid,position`` is a
    header) and record each line's location on the store's catalogue entry. A bad line is
    reported with its number and what is wrong and skipped; a path the catalogue does not know
    is counted (scan first)."""
    summary = TapeMapSummary()
    pending: dict[str, tuple[str, int | None]] = {}

    def flush() -> None:
        known = set(
            File.objects.filter(store=store, path__in=list(pending)).values_list("path", flat=True)
        )
        summary.unknown_paths += [p for p in pending if p not in known]
        found = {p: where for p, where in pending.items() if p in known}
        summary.recorded += tape_locations_record(store=store, locations=found)
        pending.clear()

    for number, row in enumerate(csv.reader(lines), start=1):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if number == 1 and [c.strip().lower() for c in row] == ["path", "vid", "position"]:
            continue
        if len(row) != 3:
            summary.bad_lines.append(
                f"line {number}: {len(row)} fields; expected 3 (path,vid,position)"
            )
            continue
        path, vid, position = (c.strip() for c in row)
        path = path.lstrip("/")
        if not path:
            summary.bad_lines.append(f"line {number}: no path")
        elif not vid or len(vid) > VID_MAX_LENGTH:
            summary.bad_lines.append(
                f"line {number}: the vid must be 1 to {VID_MAX_LENGTH} characters"
            )
        elif not position.isdigit():
            summary.bad_lines.append(
                f"line {number}: position {position!r} is not a whole number ≥ 0"
            )
        else:
            pending[path] = (vid, int(position))
            if len(pending) >= BATCH:
                flush()
    if pending:
        flush()
    return summary
