"""Prometheus metrics of the staging service, all defined here.

Two kinds, chosen by where the truth lives:

- **Read at scrape time** (``StagingCollector``, served by the web's ``/metrics``): jobs by
  status, active sub-jobs, and the length of the broker queues. The database and the broker are
  the record of these; counting them when Prometheus asks is exact however many web or worker
  processes there are, and survives restarts.
- **Counted where they happen** (the counters and the histogram below): items and bytes staged,
  sub-job durations, repairs made by the reaper, the reconciler, the sweeper and retention. They
  happen inside worker processes, so workers run prometheus_client in multiprocess mode
  (``PROMETHEUS_MULTIPROC_DIR``, one directory per worker host or container) and each worker's
  main process serves the sum of its pool's children on ``WORKER_METRICS_PORT``.

HTTP and database metrics of Django come from django-prometheus (``django_http_*``,
``django_db_*``).
"""

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from staging.broker import broker_queue_lengths

logger = logging.getLogger(__name__)

QUEUES = ("staging", "control")

SUBJOBS_COMPLETED = Counter(
    "stagingsvc_subjobs_completed",
    "Sub-jobs a worker ran to a final status.",
    ["status"],
)
SUBJOB_DURATION = Histogram(
    "stagingsvc_subjob_duration_seconds",
    "Wall time of one sub-job run on a worker, by final status.",
    ["status"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600),
)
ITEMS_STAGED = Counter(
    "stagingsvc_items_staged", "Items that finished in sub-jobs this worker completed."
)
ITEMS_FAILED = Counter(
    "stagingsvc_items_failed", "Items that failed in sub-jobs this worker completed."
)
BYTES_STAGED = Counter(
    "stagingsvc_bytes_staged", "Bytes of finished items in sub-jobs this worker completed."
)
RECOVERY_ACTIONS = Counter(
    "stagingsvc_recovery_actions",
    "Repairs made by the periodic tasks: reaper (requeued, failed, cancelled), reconciler "
    "(republished), janitor (cancelled, rolled_up, failed), sweeper (copies_removed), "
    "retention (jobs_purged).",
    ["task", "action"],
)


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


def process_registry() -> CollectorRegistry:
    """What this host's processes counted: the sum over every process in multiprocess mode,
    else this process's default registry."""
    if multiprocess_dir() is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def process_exited(pid: int) -> None:
    """Tell multiprocess mode a child is gone, so its live gauges stop being reported."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)


class StagingCollector(Collector):
    """Metrics read from the database and the broker when Prometheus scrapes."""

    def collect(self) -> Iterator[Metric]:
        # Imported here: this module is imported by the Celery app before Django is set up.
        from django.db.models import Count

        from staging.models import ACTIVE_STATUSES, Job, JobStatus, SubJob

        jobs = GaugeMetricFamily(
            "stagingsvc_jobs", "Jobs in the database by status.", labels=["status"]
        )
        counts = dict(Job.objects.order_by().values_list("status").annotate(n=Count("pk")))
        for status in JobStatus.values:
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs

        subjobs = GaugeMetricFamily(
            "stagingsvc_subjobs_active",
            "Sub-jobs waiting for or held by a worker, by status.",
            labels=["status"],
        )
        active = dict(
            SubJob.objects.filter(status__in=ACTIVE_STATUSES)
            .order_by()
            .values_list("status")
            .annotate(n=Count("pk"))
        )
        for status in (JobStatus.NOT_STARTED, JobStatus.RUNNING):
            subjobs.add_metric([status], active.get(status, 0))
        yield subjobs

        queues = GaugeMetricFamily(
            "stagingsvc_queue_length",
            "Messages waiting in a broker queue (not those a worker has taken).",
            labels=["queue"],
        )
        up = GaugeMetricFamily("stagingsvc_broker_up", "1 when the broker answered this scrape.")
        try:
            lengths = broker_queue_lengths(QUEUES)
        except Exception as exc:  # a scrape must still answer when the broker does not
            logger.warning("metrics: broker queue lengths unavailable: %s", exc)
            up.add_metric([], 0)
        else:
            for queue, length in lengths.items():
                queues.add_metric([queue], length)
            up.add_metric([], 1)
        yield queues
        yield up


def metrics_exposition() -> bytes:
    """The text served at /metrics: this host's process metrics, then the scrape-time ones."""
    scrape_time = CollectorRegistry()
    scrape_time.register(StagingCollector())
    return generate_latest(process_registry()) + generate_latest(scrape_time)
