"""The dispatcher: the database is the queue, and the broker carries only what may run now.

A job's sub-jobs are created NOT_STARTED and undispatched (``dispatched_at`` empty). Each pass
of ``subjobs_dispatch`` hands the next ones to the broker, oldest first, as long as capacity
allows; a sub-job counts against capacity from its dispatch until it ends (queued in the
broker, running, or handed back and waiting to be published again). Capacity is three bounds
at once:

- per store, ``Store.max_active`` (e.g. a tape library's drive count; blank: no limit);
- per owner, ``max_active_subjobs`` of the owner's account limits (blank: no limit);
- over everything, ``STAGING["DISPATCH_MAX_IN_FLIGHT"]`` (worker processes + a small prefetch),
  so the broker never holds more than that whatever waits in the database.

Release jobs free space and take no drive: they never wait for capacity.

A pass runs on beat every ``DISPATCH_INTERVAL_SECONDS`` and whenever ``dispatch_wake`` is
called (a job's sub-jobs created, a sub-job ended). Passes never overlap: each holds a
PostgreSQL advisory lock for its transaction (on SQLite the write lock its IMMEDIATE
transaction takes at BEGIN does the same), so two dispatchers cannot both fill the same free
slot. Limits are read at every pass: a change applies without a restart.
"""

import logging
from collections import Counter
from collections.abc import Iterable

from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Count, Q

from staging.models import JobStatus, Store, SubJob
from staging.selectors_accounts import limits_of

# A module reference: staging.services.jobs imports this module to wake it.
from staging.services import jobs

logger = logging.getLogger(__name__)

DISPATCH_TASK = "tasks.maintenance.dispatch_waiting_subjobs"
# Set (if absent) by a wake that publishes a pass, deleted by the pass as it starts: a burst of
# wakes before a pass starts is that one pass, and a wake during a pass gets one more.
WAKE_KEY = "stagingsvc.dispatch-wake"
# A wake whose pass was lost with the broker's data leaves the key behind: it expires, and beat
# dispatches meanwhile.
WAKE_KEY_SECONDS = 30
# Any number that no other advisory lock of the database uses.
ADVISORY_LOCK_ID = 0x57A6_D15C
# Rows read per step of a pass: a step that finds an owner or a store full moves on to
# sub-jobs of others in the next step, without reading the rest of the full one's.
SCAN_STEP = 200
MAX_STEPS = 50
UNCAPPED_TASKS = ("release",)

DISPATCHED = Q(status=JobStatus.RUNNING) | Q(
    status=JobStatus.NOT_STARTED, dispatched_at__isnull=False
)


def subjobs_in_flight():
    """Sub-jobs that hold a slot: dispatched and not ended (release jobs' take none)."""
    return SubJob.objects.filter(DISPATCHED).exclude(job__task__in=UNCAPPED_TASKS)


def subjobs_waiting():
    """Sub-jobs the dispatcher may hand out: queued, never dispatched, of a job that still
    wants them, and not failed too often (the janitor fails those)."""
    return SubJob.objects.filter(
        status=JobStatus.NOT_STARTED,
        dispatched_at__isnull=True,
        failures__lt=settings.STAGING["MAX_ATTEMPTS"],
        job__status__in=[JobStatus.NOT_STARTED, JobStatus.RUNNING],
    )


class _Capacity:
    """Free slots per store, per owner and in all, as one pass sees them."""

    def __init__(self):
        in_flight = subjobs_in_flight()
        self.room = settings.STAGING["DISPATCH_MAX_IN_FLIGHT"] - in_flight.count()
        self.store_used = Counter(_count_by(in_flight, "job__store_id"))
        self.owner_used = Counter(_count_by(in_flight, "job__owner_id"))
        self.store_limit = dict(Store.objects.values_list("pk", "max_active"))
        self.owner_limit: dict[int | None, int | None] = {None: None}

    def learn_owners(self, owner_ids: Iterable[int | None]) -> None:
        unknown = {pk for pk in owner_ids if pk not in self.owner_limit}
        for user in get_user_model().objects.filter(pk__in=unknown):
            self.owner_limit[user.pk] = limits_of(user).max_active_subjobs

    def store_full(self, store_id: int) -> bool:
        limit = self.store_limit.get(store_id)
        return limit is not None and self.store_used[store_id] >= limit

    def owner_full(self, owner_id: int | None) -> bool:
        limit = self.owner_limit.get(owner_id)
        return limit is not None and self.owner_used[owner_id] >= limit

    def take(self, store_id: int, owner_id: int | None) -> None:
        self.room -= 1
        self.store_used[store_id] += 1
        self.owner_used[owner_id] += 1


def _count_by(queryset, field: str) -> dict:
    return dict(queryset.values_list(field).annotate(n=Count("pk")).values_list(field, "n"))


def _lock_dispatch() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK_ID])


def subjobs_dispatch() -> int:
    """One pass: publish the waiting sub-jobs that capacity allows, oldest first; returns how
    many were handed to the broker."""
    with transaction.atomic():
        _lock_dispatch()
        chosen = _choose()
        return jobs.subjobs_publish(subjob_ids=chosen) if chosen else 0


def _choose() -> list[int]:
    capacity = _Capacity()
    chosen = [
        pk
        for pk in subjobs_waiting()
        .filter(job__task__in=UNCAPPED_TASKS)
        .order_by("pk")
        .values_list("pk", flat=True)
    ]
    full_stores = {pk for pk in capacity.store_limit if capacity.store_full(pk)}
    full_owners: set[int] = set()
    after = 0
    for _ in range(MAX_STEPS):
        if capacity.room <= 0:
            break
        step = list(
            subjobs_waiting()
            .exclude(job__task__in=UNCAPPED_TASKS)
            .exclude(job__store_id__in=full_stores)
            .exclude(job__owner_id__in=full_owners)
            .filter(pk__gt=after)
            .order_by("pk")
            .values_list("pk", "job__store_id", "job__owner_id")[:SCAN_STEP]
        )
        if not step:
            break
        capacity.learn_owners(owner for _, _, owner in step)
        for pk, store_id, owner_id in step:
            after = pk
            if capacity.room <= 0:
                break
            if capacity.store_full(store_id):
                full_stores.add(store_id)
                continue
            if capacity.owner_full(owner_id):
                full_owners.add(owner_id)
                continue
            capacity.take(store_id, owner_id)
            chosen.append(pk)
    return chosen


def dispatch_wake() -> None:
    """Ask for a dispatch pass soon (on the control queue). Never raises: when the broker is
    away, beat's next pass dispatches instead."""
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
            if conn.transport.driver_type == "redis":
                # Through kombu's client, so the key carries the broker's key prefix.
                client = conn.default_channel.client
                if not client.set(WAKE_KEY, "1", nx=True, ex=WAKE_KEY_SECONDS):
                    return  # a pass is already asked for and has not started yet
            current_app.send_task(DISPATCH_TASK, connection=conn)
    except Exception:
        logger.warning("could not wake the dispatcher; beat's next pass will dispatch")


def dispatch_woken() -> int:
    """A pass asked for by ``dispatch_wake`` (or by beat): forget the wake first, so a wake
    arriving during this pass asks for another, then dispatch."""
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
            if conn.transport.driver_type == "redis":
                conn.default_channel.client.delete(WAKE_KEY)
    except Exception:
        logger.warning("could not clear the dispatcher's wake key; it expires on its own")
    return subjobs_dispatch()
