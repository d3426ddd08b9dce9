"""What a worker records around each task, through Celery's signals (the tasks themselves know
nothing of it): the log context of the job and sub-job a task serves, and the metrics of
``staging.metrics``. Listed in CELERY_IMPORTS, so every worker connects these at start-up."""

import logging
import os
import time

from celery import signals
from prometheus_client import start_http_server

from staging import metrics
from staging.metrics_multiprocess import multiprocess_dir_reset, process_exited
from staging.services.publishing import JOB_HEADER, SUBJOB_TASK_NAMES
from stagingsvc.logconfig import log_context_reset, log_context_set, worker_host

logger = logging.getLogger(__name__)

# What each periodic task's return value reports, as (key in its result, action label).
RECOVERY_RESULTS = {
    "tasks.maintenance.reap_expired_leases": (
        ("requeued", "requeued"),
        ("failed", "failed"),
        ("cancelled", "cancelled"),
    ),
    "tasks.maintenance.reconcile_lost_subjobs": (("republished", "republished"),),
    "tasks.maintenance.janitor": (
        ("cancelled", "cancelled"),
        ("rolled_up", "rolled_up"),
        ("failed", "failed"),
    ),
    "tasks.maintenance.sweep_unpinned_copies": (("removed", "copies_removed"),),
    "tasks.maintenance.purge_old_jobs": (("jobs", "jobs_purged"),),
}

# Per pool process: the task running now (a prefork child runs one task at a time).
_running: dict[str, tuple[float, object]] = {}


@signals.worker_init.connect
def metrics_exporter_start(**kwargs) -> None:
    """In the worker's main process, before the pool forks: drop what earlier runs left in the
    multiprocess directory and serve the pool's metrics on WORKER_METRICS_PORT (unset or 0: not
    served)."""
    multiprocess_dir_reset(keep_pid=os.getpid())
    port = int(os.environ.get("WORKER_METRICS_PORT") or 0)
    if port:
        address = os.environ.get("WORKER_METRICS_ADDRESS", "0.0.0.0")
        start_http_server(port, addr=address, registry=metrics.process_registry())
        logger.info("worker metrics on http://%s:%s/metrics", address, port)


@signals.worker_process_shutdown.connect
def metrics_process_exited(pid=None, **kwargs) -> None:
    process_exited(pid or os.getpid())


def _subjob_context(subjob_id, request) -> dict:
    """The log context of a sub-job's task: its job as the message names it (JOB_HEADER), or
    as the database does for a message without the header."""
    from staging.models import SubJob

    job_uuid = getattr(request, JOB_HEADER, None)
    if job_uuid is None:
        job_uuid = SubJob.objects.filter(pk=subjob_id).values_list("job__uuid", flat=True).first()
    return {"job_id": job_uuid, "subjob_id": subjob_id}


@signals.task_prerun.connect
def task_context_enter(task_id=None, task=None, args=None, kwargs=None, **extra) -> None:
    context = {"task_id": task_id, "task_name": task.name, "worker_host": worker_host()}
    if task.name in SUBJOB_TASK_NAMES:
        subjob_id = args[0] if args else (kwargs or {}).get("subjob_id")
        context.update(_subjob_context(subjob_id, task.request))
    token = log_context_set(**context)
    _running[task_id] = (time.monotonic(), token)
    if task.name in SUBJOB_TASK_NAMES:
        logger.info("sub-job %s of job %s: started", context["subjob_id"], context["job_id"])


@signals.task_postrun.connect
def task_context_exit(task_id=None, task=None, retval=None, state=None, **extra) -> None:
    started, token = _running.pop(task_id, (None, None))
    try:
        if state == "SUCCESS" and isinstance(retval, dict):
            if task.name in SUBJOB_TASK_NAMES:
                _subjob_recorded(retval, time.monotonic() - started if started else None)
            elif task.name in RECOVERY_RESULTS:
                for key, action in RECOVERY_RESULTS[task.name]:
                    if retval.get(key):
                        metrics.RECOVERY_ACTIONS.labels(task.name.rsplit(".", 1)[-1], action).inc(
                            retval[key]
                        )
    finally:
        if token is not None:
            log_context_reset(token)


def _subjob_recorded(retval: dict, seconds: float | None) -> None:
    """Count a sub-job this worker ran to its end (a duplicate delivery returns status None)."""
    from django.db.models import Count, Q, Sum

    from staging.models import Item, JobStatus

    status = retval.get("status")
    if not status:
        return
    if all(key in retval for key in ("finished", "failed", "bytes")):
        counts = retval  # the run's own tally (tasks.staging): no query
    else:
        counts = Item.objects.filter(subjob_id=retval["subjob"]).aggregate(
            finished=Count("pk", filter=Q(status=JobStatus.FINISHED)),
            failed=Count("pk", filter=Q(status=JobStatus.FAILED)),
            bytes=Sum("size", filter=Q(status=JobStatus.FINISHED), default=0),
        )
    metrics.SUBJOBS_COMPLETED.labels(status).inc()
    metrics.ITEMS_STAGED.inc(counts["finished"])
    metrics.ITEMS_FAILED.inc(counts["failed"])
    metrics.BYTES_STAGED.inc(counts["bytes"])
    if seconds is not None:
        metrics.SUBJOB_DURATION.labels(status).observe(seconds)
    logger.info(
        "sub-job %s: %s, %s items staged, %s failed, %s bytes",
        retval["subjob"],
        status,
        counts["finished"],
        counts["failed"],
        counts["bytes"],
    )
