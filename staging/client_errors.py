"""What a client or a member of staff reads when a file fails: the reason and the file's path
relative to its store, never the server's archive or staging root (a client knows its files by
their store paths, and the roots are the server's business).

An item's error reads ``<reason>: <store path>`` (or ``<store path> <reason>``, as in
``run2/b.txt is a FIFO, not a regular file``) so that the failures of a job can be counted by
reason (``staging.selectors.job_failure_text``)."""

import os
import re
from collections.abc import Iterable
from pathlib import Path


def _root_spellings(roots: Iterable[str | os.PathLike]) -> list[str]:
    """Each root as configured and as resolved (paths are resolved before they are opened),
    longest first so that a root beneath another is matched before it."""
    spellings = set()
    for root in roots:
        if not root:
            continue
        for spelling in (str(root), str(Path(root).resolve())):
            spelling = spelling.rstrip("/")
            if spelling:
                spellings.add(spelling)
    return sorted(spellings, key=len, reverse=True)


def paths_relative(text: str, *, roots: Iterable[str | os.PathLike]) -> str:
    """``text`` with every path beneath one of ``roots`` written relative to that root (the
    root itself becomes ``.``)."""
    for root in _root_spellings(roots):
        # The root followed by "/" (a path beneath it), or by something that ends a path.
        text = re.sub(re.escape(root) + r"(/|(?=[\s:'\",;)]|$))", _relative, text)
    return text


def _relative(match: re.Match) -> str:
    return "" if match.group(1) == "/" else "."


def error_for_client(exc: BaseException, *, roots: Iterable[str | os.PathLike]) -> str:
    """Why ``exc`` made a file fail, naming paths relative to ``roots`` (a store's archive and
    staging roots): ``source file not found: run2/b.txt``."""
    roots = list(roots)
    if isinstance(exc, OSError) and exc.filename:
        where = paths_relative(os.fsdecode(exc.filename), roots=roots)
        if isinstance(exc, FileNotFoundError):
            return f"source file not found: {where}"
        if isinstance(exc, PermissionError):
            return f"permission denied: {where}"
        if exc.strerror:
            return f"{exc.strerror.lower()}: {where}"
    if isinstance(exc, OSError) and exc.strerror:
        return paths_relative(exc.strerror, roots=roots)
    return paths_relative(str(exc), roots=roots)


def item_error_text(exc: BaseException, *, path: str, roots: Iterable[str | os.PathLike]) -> str:
    """An item's error: why ``exc`` made the file at store path ``path`` fail, in one of the
    two forms above (the path is added when the reason does not name it: a size mismatch, a
    changed source, a symlink refused)."""
    text = error_for_client(exc, roots=roots)
    names_it = text.endswith(f": {path}") or text.startswith(f"{path} ") or repr(path) in text
    return text if names_it else f"{text}: {path}"
