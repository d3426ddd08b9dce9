"""What the commands that import a file of lines into a store's catalogue share: reading the
file (or standard input), turning a refusal into a command error, and naming the paths the
catalogue does not know."""

import sys
from collections.abc import Callable
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from staging.errors import ServiceError
from staging.models import Store
from staging.selectors import store_get

# Enough of the unknown paths for an operator to see what is wrong, not all of 10,000.
UNKNOWN_PATHS_SHOWN = 20


def lines_import(
    importer: Callable, *, store: str | None, file: str, newline: str | None = None
) -> tuple[Store, object]:
    """``importer(store=…, lines=…)`` over ``file`` (``-``: standard input) for the store with
    that id (None: the primary store): the store and what the importer returned."""
    try:
        target = store_get(slug=store)
        if file == "-":
            return target, importer(store=target, lines=sys.stdin)
        with Path(file).open(encoding="utf-8", errors="surrogateescape", newline=newline) as lines:
            return target, importer(store=target, lines=lines)
    except OSError as exc:
        raise CommandError(f"cannot read {file}: {exc.strerror}") from exc
    except ServiceError as exc:
        raise CommandError(exc.detail) from exc


def unknown_paths_write(command: BaseCommand, paths: list[str]) -> None:
    if paths:
        shown = ", ".join(paths[:UNKNOWN_PATHS_SHOWN])
        command.stderr.write(f"not in the catalogue: {shown}")
