"""prometheus_client's multiprocess directory, for the processes that share one: gunicorn's
master and workers, a Celery worker and its pool. Only the standard library and
prometheus_client here, no metric and no Django: gunicorn's master imports this module and must
not create metric files of its own or load the application."""

import os
from pathlib import Path

from prometheus_client import multiprocess


def multiprocess_dir() -> Path | None:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(path) if path else None


def multiprocess_dir_reset(*, keep_pid: int | None = None) -> None:
    """Empty the multiprocess directory when a process group starts: files left by a previous
    run would otherwise be added to this run's counters. The files of ``keep_pid`` (the calling
    process, which may have counted something already) stay; their names end in ``_<pid>``."""
    path = multiprocess_dir()
    if path is None:
        return
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        if keep_pid is None or stale.stem.rsplit("_", 1)[-1] != str(keep_pid):
            stale.unlink(missing_ok=True)


def process_exited(pid: int) -> None:
    """Tell multiprocess mode a child is gone, so its live gauges stop being reported."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)
