"""Tasks on the ``staging`` queue: a sub-job of any catalogue task (staging.catalogue), and the
worker's shutdown hand-back."""

import contextlib
import os
import signal
from pathlib import Path

from celery import shared_task
from celery.signals import worker_shutting_down
from django.db import InterfaceError, OperationalError

from staging.catalogue import item_work_for
from staging.services.cartridges import cartridge_run
from staging.services.execution import subjob_run, worker_identity
from staging.services.publishing import RUN_SUBJOB_TASK, RUN_SUBJOB_TASK_OLD_NAME

SUBJOB_TASK_OPTIONS = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    # A lost database connection is transient: the lease was handed back, try again later.
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "max_retries": 5,
}


@shared_task(name=RUN_SUBJOB_TASK, **SUBJOB_TASK_OPTIONS)
def run_subjob(self, subjob_id: int, cartridge: bool = False) -> dict:
    """Run one sub-job of a job of any catalogue task: the work per item is the task's, looked
    up in the catalogue by the job's task. A duplicate delivery returns without doing anything.
    ``cartridge``: a tape library's cartridge sub-job (its message says so:
    staging.services.publishing)."""
    return _subjob_run(self.request, subjob_id, cartridge)


# run_subjob's name until it was renamed. Messages published before an upgrade, still in the
# broker when the new workers start (or re-delivered after), carry this name; a worker that did
# not know it would drop them and leave their sub-jobs to the reconciler. Nothing publishes it
# any more: remove it once no deployment upgrades from a release that did.
@shared_task(name=RUN_SUBJOB_TASK_OLD_NAME, **SUBJOB_TASK_OPTIONS)
def stage_subjob(self, subjob_id: int, cartridge: bool = False) -> dict:
    return _subjob_run(self.request, subjob_id, cartridge)


def _subjob_run(request, subjob_id: int, cartridge: bool) -> dict:
    worker = worker_identity(request.hostname)
    tally: dict = {}
    if cartridge:  # a tape library's cartridge, with the others queued
        status = cartridge_run(subjob_id=subjob_id, worker=worker, task_id=request.id)
    else:
        status = subjob_run(
            subjob_id=subjob_id,
            worker=worker,
            task_id=request.id,
            work_for=item_work_for,
            tally=tally,
        )
    # The items' tally, when the run knew it, spares the metrics a count of them
    # (tasks.instrumentation).
    return {"subjob": subjob_id, "status": status, "worker": worker, **tally}


@worker_shutting_down.connect
def hand_back_running_subjobs(sig, how, exitcode, **kwargs):
    """On a warm shutdown, signal the pool processes too: each running sub-job then stops (the
    pool's SIGTERM handler raises SystemExit), keeps its finished files and goes back to the
    queue, instead of holding the shutdown until its last copy ends. A supervisor that signals
    the whole process group (honcho) reaches them directly; one that signals only the main
    process (Kubernetes, Docker, systemd's KillMode=mixed) reaches them this way.

    Celery's soft shutdown (worker_soft_shutdown_timeout) does not replace this relay. It is a
    wait before a cold shutdown, and a SIGTERM starts one only with REMAP_SIGTERM=SIGQUIT in
    the worker's environment: billiard reads it when the celery command starts, before this
    app is loaded, so every deployment would have to set it, and the control and webhooks
    workers would then cancel the tasks a SIGTERM finds running instead of finishing them.
    In the wait a sub-job copies on rather than stopping at its next file. After it, Celery
    signals each running task's process (SIGQUIT: SystemExit, the hand-back starts) and, once
    its consumer has closed, terminates the pool with the same signal, which kills a process
    still writing its hand-back by then (the first signal reset its handler): that sub-job
    waits for its lease to expire. A warm shutdown, which this relay signals into, waits for
    the pool processes to exit."""
    if how != "Warm":
        return
    pid = os.getpid()
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if not children.exists():
        return
    for child in children.read_text().split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(child), signal.SIGTERM)
