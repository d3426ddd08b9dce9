"""Prometheus metrics of the staging service, all defined here.

Two kinds, chosen by where the truth lives:

- **Read at scrape time** (``StagingCollector``, served by the web's ``/metrics``): jobs by
  status, active sub-jobs, the length of the broker queues, and the dispatcher's state (slots
  per store, waiting sub-jobs by reason, the staging areas' free space, waiting per priority and
  for the owners with most waiting) read with the dispatcher's own rules
  (staging.selectors_dispatch). The database and the broker are
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
from collections.abc import Iterator

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
from staging.metrics_multiprocess import multiprocess_dir

logger = logging.getLogger(__name__)

QUEUES = ("staging", "control", "webhooks")
# Owners are users: an unbounded label. Only the owners with most waiting sub-jobs get a series
# of their own (who is flooding the queue is what an alert needs); the rest are counted per
# priority in stagingsvc_owners_waiting.
OWNERS_WITH_A_SERIES = 10

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


def process_registry() -> CollectorRegistry:
    """What this host's processes counted: the sum over every process in multiprocess mode,
    else this process's default registry."""
    if multiprocess_dir() is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


class StagingCollector(Collector):
    """Metrics read from the database and the broker when Prometheus scrapes."""

    def collect(self) -> Iterator[Metric]:
        # Imported here: this module is imported by the Celery app before Django is set up.
        from django.db.models import Count

        from staging.models import PENDING_STATUSES, Job, JobStatus, SubJob

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
            SubJob.objects.filter(status__in=PENDING_STATUSES)
            .order_by()
            .values_list("status")
            .annotate(n=Count("pk"))
        )
        for status in PENDING_STATUSES:
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
        yield from dispatch_metrics()
        yield from tape_metrics()


def _per_store(name: str, documentation: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=["store"])


def dispatch_metrics() -> Iterator[Metric]:
    """The dispatcher's state: what holds each store's slots and why sub-jobs wait."""
    from django.contrib.auth import get_user_model

    from staging.selectors_dispatch import WaitReason, dispatch_state
    from staging.services.staging_space import staging_area_space
    from staging.space import space_bytes

    state = dispatch_state()
    capacity = state.capacity
    in_flight = GaugeMetricFamily(
        "stagingsvc_dispatch_in_flight",
        "Sub-jobs holding a dispatch slot (in the broker or running; releases take none).",
    )
    in_flight.add_metric([], capacity.store_used.total())
    yield in_flight
    bound = GaugeMetricFamily(
        "stagingsvc_dispatch_max_in_flight", "STAGING_DISPATCH_MAX_IN_FLIGHT: slots in all."
    )
    bound.add_metric([], capacity.bound)
    yield bound

    active = _per_store(
        "stagingsvc_store_subjobs_in_flight",
        "Sub-jobs of a store holding a dispatch slot.",
    )
    limit = _per_store(
        "stagingsvc_store_max_active",
        "A store's max_active (no series for a store without a limit).",
    )
    full = _per_store(
        "stagingsvc_staging_area_full",
        "1 while a store's dispatch is paused: its staging area fell below the low watermark.",
    )
    free = _per_store(
        "stagingsvc_staging_area_free_bytes",
        "Free bytes of the filesystem holding a store's staging area.",
    )
    watermarks = GaugeMetricFamily(
        "stagingsvc_staging_area_watermark_bytes",
        "A store's free-space watermarks in bytes (stores that set them).",
        labels=["store", "watermark"],
    )
    for store_id, store in state.stores.items():
        active.add_metric([store.slug], capacity.store_used[store_id])
        if store.max_active is not None:
            limit.add_metric([store.slug], store.max_active)
        full.add_metric([store.slug], int(store.staging_full_since is not None))
        try:
            free_bytes, total = staging_area_space(store.staging_root)
        except OSError:
            continue  # not mounted on this web host: the workers' metrics tell
        free.add_metric([store.slug], free_bytes)
        if store.free_space_low:
            low = space_bytes(store.free_space_low, total)
            high = max(low, space_bytes(store.free_space_high or store.free_space_low, total))
            watermarks.add_metric([store.slug, "low"], low)
            watermarks.add_metric([store.slug, "high"], high)
    yield from (active, limit, full, free, watermarks)

    waiting = GaugeMetricFamily(
        "stagingsvc_subjobs_waiting",
        "Sub-jobs waiting for a dispatch slot, by store and by why they wait.",
        labels=["store", "reason"],
    )
    by_store: dict[tuple[str, str], int] = {
        (store.slug, reason.value): 0 for store in state.stores.values() for reason in WaitReason
    }
    by_priority: dict[int, int] = dict.fromkeys(range(1, 6), 0)
    owners_by_priority: dict[int, set] = {priority: set() for priority in range(1, 6)}
    by_owner: dict[int | None, int] = {}
    for group in state.groups:
        by_store[(state.stores[group.store_id].slug, group.reason.value)] += group.subjobs
        by_priority[group.priority] = by_priority.get(group.priority, 0) + group.subjobs
        owners_by_priority.setdefault(group.priority, set()).add(group.owner_id)
        by_owner[group.owner_id] = by_owner.get(group.owner_id, 0) + group.subjobs
    for labels, n in by_store.items():
        waiting.add_metric(list(labels), n)
    yield waiting

    per_priority = GaugeMetricFamily(
        "stagingsvc_subjobs_waiting_by_priority",
        "Sub-jobs waiting for a dispatch slot, by their job's priority (1-5).",
        labels=["priority"],
    )
    owners = GaugeMetricFamily(
        "stagingsvc_owners_waiting",
        "Owners with sub-jobs waiting for a dispatch slot, by priority (the fair-share queue).",
        labels=["priority"],
    )
    for priority in sorted(by_priority):
        per_priority.add_metric([str(priority)], by_priority[priority])
        owners.add_metric([str(priority)], len(owners_by_priority.get(priority, ())))
    yield per_priority
    yield owners

    top = sorted(by_owner.items(), key=lambda item: -item[1])[:OWNERS_WITH_A_SERIES]
    names = dict(
        get_user_model()
        .objects.filter(pk__in=[owner_id for owner_id, _ in top])
        .values_list("pk", get_user_model().USERNAME_FIELD)
    )
    per_owner = GaugeMetricFamily(
        "stagingsvc_owner_subjobs_waiting",
        f"Sub-jobs waiting for a dispatch slot, for the {OWNERS_WITH_A_SERIES} owners with most.",
        labels=["owner"],
    )
    for owner_id, n in top:
        per_owner.add_metric([names.get(owner_id, "")], n)
    yield per_owner


def tape_metrics() -> Iterator[Metric]:
    """The simulated tape libraries: mounts, bytes read and seek time per store (counters since
    the drives were created), bytes per mount, and busy drives and waiting cartridges now."""
    from prometheus_client.core import CounterMetricFamily

    from staging.selectors_tape import tape_overview

    families = {
        "mounts": CounterMetricFamily(
            "stagingsvc_tape_mounts", "Cartridges mounted by a store's drives.", labels=["store"]
        ),
        "bytes_read": CounterMetricFamily(
            "stagingsvc_tape_read_bytes", "Bytes read by a store's drives.", labels=["store"]
        ),
        "seek_seconds": CounterMetricFamily(
            "stagingsvc_tape_seek_seconds",
            "Seconds a store's drives spent locating along cartridges.",
            labels=["store"],
        ),
        "mount_seconds": CounterMetricFamily(
            "stagingsvc_tape_mount_seconds",
            "Seconds a store's drives spent mounting and unmounting.",
            labels=["store"],
        ),
    }
    per_mount = _per_store("stagingsvc_tape_bytes_per_mount", "Bytes read per mount, on average.")
    busy = _per_store("stagingsvc_tape_drives_busy", "Drives held by a worker now.")
    waiting = _per_store(
        "stagingsvc_tape_cartridges_waiting", "Cartridges with files waiting, not being read."
    )
    for view in tape_overview():
        store = view.library.store.slug
        for name, family in families.items():
            family.add_metric([store], view.totals[name])
        per_mount.add_metric([store], view.bytes_per_mount)
        busy.add_metric([store], sum(d.busy for d in view.drives))
        waiting.add_metric([store], sum(not q.active for q in view.queues) + view.more_cartridges)
    yield from families.values()
    yield from (per_mount, busy, waiting)


def metrics_exposition() -> bytes:
    """The text served at /metrics: this host's process metrics, then the scrape-time ones."""
    scrape_time = CollectorRegistry()
    scrape_time.register(StagingCollector())
    return generate_latest(process_registry()) + generate_latest(scrape_time)
