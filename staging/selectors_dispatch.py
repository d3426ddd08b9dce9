"""What the dispatcher sees: the slots in use per store and owner, the sub-jobs waiting for one,
and why each waits. The dispatcher (staging.services.dispatch) decides with ``DispatchCapacity``;
the admin dashboard, the job page and ``/metrics`` explain with the same class, so the rules are
written once.

Every read here is an aggregate (grouped by store, owner and priority), so it costs the same with
ten waiting sub-jobs or a hundred thousand; the owners with work waiting are read with their
roles and account limit rows in one query (on PostgreSQL)."""

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, Exists, Min, OuterRef, Q
from django.utils import timezone

from staging.models import PENDING_STATUSES, Job, JobStatus, Store, SubJob
from staging.selectors_accounts import (
    limits_of,
    remember_roles_and_limit_rows,
    roles_and_limit_rows,
    roles_and_limit_rows_readable,
)

# Release jobs free space and take no drive: they never wait for capacity (and run on the
# control queue, so they never wait behind staging either).
UNCAPPED_TASKS = ("release",)

DISPATCHED = Q(status=JobStatus.RUNNING) | Q(
    status=JobStatus.NOT_STARTED, dispatched_at__isnull=False
)
# Owners listed per priority on the dashboard: the next few to be served are what an operator
# needs; the rest are counted.
OWNERS_SHOWN = 10


def subjobs_in_flight():
    """Sub-jobs that hold a slot: dispatched and not ended (release jobs' take none)."""
    return SubJob.objects.filter(DISPATCHED).exclude(job__task__in=UNCAPPED_TASKS)


def _undispatched() -> Q:
    """A sub-job queued, never dispatched, and not failed too often (the janitor fails those)."""
    return Q(
        status=JobStatus.NOT_STARTED,
        dispatched_at__isnull=True,
        failures__lt=settings.STAGING["MAX_ATTEMPTS"],
    )


def subjobs_waiting():
    """Sub-jobs the dispatcher may hand out: undispatched, of a job that still wants them."""
    return SubJob.objects.filter(_undispatched(), job__status__in=PENDING_STATUSES)


def jobs_with_capped_work_waiting():
    """Jobs that want their sub-jobs, hold some the dispatcher may hand out, and count against
    the limits (not releases). The job's own conditions stay on the outer query, so PostgreSQL
    probes each active job's sub-jobs by the job's index (about 1 ms with 100,000 sub-jobs
    waiting) instead of reading every waiting sub-job into a hash (about 40 ms)."""
    return (
        Job.objects.filter(status__in=PENDING_STATUSES)
        .exclude(task__in=UNCAPPED_TASKS)
        .filter(Exists(SubJob.objects.filter(_undispatched(), job=OuterRef("pk"))))
    )


class OwnerLimits:
    """Owners' ``dispatch_weight`` and ``max_active_subjobs`` (their own or their role's), each
    read once for a pass: by the dispatcher and by the give-way asks."""

    def __init__(self):
        self.known: dict[int | None, tuple[int, int | None]] = {}

    def learn(self, owner_ids: Iterable[int | None]) -> None:
        unknown = {pk for pk in owner_ids if pk is not None and pk not in self.known}
        if not unknown:
            return
        users = get_user_model().objects.filter(pk__in=unknown).only("pk", "is_superuser")
        # Every owner's roles and limit rows in the query that reads the owners, not two
        # more reads per owner.
        in_one_query = roles_and_limit_rows_readable()
        if in_one_query:
            users = users.annotate(**roles_and_limit_rows(OuterRef("pk")))
        for user in users:
            if in_one_query:
                remember_roles_and_limit_rows(user, user)
            limits = limits_of(user)
            self.known[user.pk] = (limits.dispatch_weight or 1, limits.max_active_subjobs)

    def of(self, owner_id: int | None) -> tuple[int, int | None]:
        """(weight, limit); an owner with neither set (or no owner) weighs 1 without a limit."""
        return self.known.get(owner_id, (1, None))


class DispatchCapacity:
    """Slots in use and free per store, per owner and in all, as one pass sees them."""

    def __init__(self, stores: Iterable[Store] | None = None, owners: OwnerLimits | None = None):
        """``stores``: every store, when the caller read them already (else one query);
        ``owners``: the owner limits the caller shares with its give-way asks."""
        # One read of what is in flight, by store and owner; the totals are its sums.
        self.store_used: Counter = Counter()
        self.owner_used: Counter = Counter()
        in_flight = (
            subjobs_in_flight()
            .values_list("job__store_id", "job__owner_id")
            .annotate(n=Count("pk"))
            .order_by()
        )
        for store_id, owner_id, n in in_flight:
            self.store_used[store_id] += n
            self.owner_used[owner_id] += n
        self.bound = settings.STAGING["DISPATCH_MAX_IN_FLIGHT"]
        self.room = self.bound - self.store_used.total()
        if stores is None:
            self.store_limit = dict(Store.objects.values_list("pk", "max_active"))
        else:
            self.store_limit = {store.pk: store.max_active for store in stores}
        self.owners = owners if owners is not None else OwnerLimits()
        self.chosen: list[int] = []

    def learn_owners(self, owner_ids: Iterable[int | None]) -> None:
        self.owners.learn(owner_ids)

    def store_full(self, store_id: int) -> bool:
        limit = self.store_limit.get(store_id)
        return limit is not None and self.store_used[store_id] >= limit

    def owner_limit(self, owner_id: int | None) -> int | None:
        return self.owners.of(owner_id)[1]

    def owner_full(self, owner_id: int | None) -> bool:
        limit = self.owner_limit(owner_id)
        return limit is not None and self.owner_used[owner_id] >= limit

    def weight(self, owner_id: int | None) -> int:
        return self.owners.of(owner_id)[0]

    def share(self, owner_id: int | None) -> float:
        """Sub-jobs in flight per unit of the owner's weight (``dispatch_weight``)."""
        return self.owner_used[owner_id] / self.weight(owner_id)

    def take(self, pk: int, store_id: int, owner_id: int | None) -> None:
        self.room -= 1
        self.store_used[store_id] += 1
        self.owner_used[owner_id] += 1
        self.chosen.append(pk)


class WaitReason(StrEnum):
    """Why a waiting sub-job was not dispatched, checked in this order (the first that holds)."""

    STAGING_AREA_FULL = "staging area full"
    STORE_LIMIT = "store at its limit"
    OWNER_LIMIT = "owner at its limit"
    HIGHER_PRIORITY = "higher priority first"
    IN_FLIGHT_BOUND = "in-flight bound"
    NEXT_PASS = "next pass"


@dataclass(frozen=True)
class WaitingGroup:
    """Waiting sub-jobs of one store, owner and priority, and why they wait."""

    store_id: int
    owner_id: int | None
    priority: int
    subjobs: int
    oldest_job_id: int
    reason: WaitReason = WaitReason.NEXT_PASS


@dataclass
class DispatchState:
    """One read of the dispatcher's state: its capacity, the stores' staging-space pauses (as
    the last pass recorded them) and every group of waiting sub-jobs with its reason."""

    capacity: DispatchCapacity
    stores: dict[int, Store]
    groups: list[WaitingGroup]
    top_priority: int | None  # the highest priority a free slot would go to

    def held_back(self, *, store_id: int, owner_id: int | None) -> WaitReason | None:
        """What keeps the sub-jobs of this store and owner from any slot, or None."""
        store = self.stores.get(store_id)
        if store is not None and store.staging_full_since is not None:
            return WaitReason.STAGING_AREA_FULL
        if self.capacity.store_full(store_id):
            return WaitReason.STORE_LIMIT
        if self.capacity.owner_full(owner_id):
            return WaitReason.OWNER_LIMIT
        return None

    def reason(self, *, store_id: int, owner_id: int | None, priority: int) -> WaitReason:
        if held := self.held_back(store_id=store_id, owner_id=owner_id):
            return held
        if self.capacity.room <= 0:
            if self.top_priority is not None and priority < self.top_priority:
                return WaitReason.HIGHER_PRIORITY
            return WaitReason.IN_FLIGHT_BOUND
        return WaitReason.NEXT_PASS


def dispatch_state() -> DispatchState:
    """The dispatcher's state now, in a bounded number of queries (see the module's docstring)."""
    capacity = DispatchCapacity()
    stores = {store.pk: store for store in Store.objects.all()}
    rows = list(
        subjobs_waiting()
        .exclude(job__task__in=UNCAPPED_TASKS)
        .values_list("job__store_id", "job__owner_id", "job__priority")
        .annotate(n=Count("pk"), oldest=Min("job_id"))
        .order_by()
    )
    capacity.learn_owners({owner_id for _, owner_id, _, _, _ in rows})
    state = DispatchState(capacity=capacity, stores=stores, groups=[], top_priority=None)
    groups = [WaitingGroup(*row) for row in rows]
    # The priority a slot goes to: the highest one with work that neither a store nor an owner
    # holds back.
    state.top_priority = max(
        (
            g.priority
            for g in groups
            if not state.held_back(store_id=g.store_id, owner_id=g.owner_id)
        ),
        default=None,
    )
    state.groups = [
        WaitingGroup(
            g.store_id,
            g.owner_id,
            g.priority,
            g.subjobs,
            g.oldest_job_id,
            state.reason(store_id=g.store_id, owner_id=g.owner_id, priority=g.priority),
        )
        for g in groups
    ]
    return state


@dataclass
class StoreLoad:
    store: Store
    active: int
    limit: int | None
    waiting: dict[WaitReason, int] = field(default_factory=dict)

    @property
    def waiting_total(self) -> int:
        return sum(self.waiting.values())


@dataclass
class OwnerTurn:
    owner_id: int | None
    name: str
    waiting: int
    in_flight: int
    weight: int
    limit: int | None
    held_back: bool  # at its own limit, or all its work on stores that cannot take more
    is_next: bool = False


@dataclass
class PriorityQueue:
    priority: int
    owners: list[OwnerTurn]
    more_owners: int


@dataclass
class DispatchOverview:
    in_flight: int
    bound: int
    stores: list[StoreLoad]
    waiting: dict[WaitReason, int]
    queue: list[PriorityQueue]
    releases_waiting: int


def dispatch_overview() -> DispatchOverview:
    """Per store its slots in use, limit and waiting sub-jobs by reason; per priority the owners
    with work waiting, in the order the next slots would go to them (fair share)."""
    state = dispatch_state()
    capacity = state.capacity
    loads = {
        pk: StoreLoad(store=store, active=capacity.store_used[pk], limit=store.max_active)
        for pk, store in state.stores.items()
    }
    waiting: Counter = Counter()
    by_priority: dict[int, dict[int | None, list[WaitingGroup]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for group in state.groups:
        load = loads[group.store_id]
        load.waiting[group.reason] = load.waiting.get(group.reason, 0) + group.subjobs
        waiting[group.reason] += group.subjobs
        by_priority[group.priority][group.owner_id].append(group)
    names = dict(
        get_user_model()
        .objects.filter(pk__in={g.owner_id for g in state.groups})
        .values_list("pk", get_user_model().USERNAME_FIELD)
    )
    queue = [
        _priority_queue(priority, by_priority[priority], state, names)
        for priority in sorted(by_priority, reverse=True)
    ]
    releases = subjobs_waiting().filter(job__task__in=UNCAPPED_TASKS).count()
    return DispatchOverview(
        in_flight=capacity.store_used.total(),
        bound=capacity.bound,
        stores=[loads[pk] for pk in sorted(loads, key=lambda pk: loads[pk].store.slug)],
        waiting=dict(waiting),
        queue=queue,
        releases_waiting=releases,
    )


def _priority_queue(priority, owners: dict, state: DispatchState, names) -> PriorityQueue:
    """The owners of one priority in the order the dispatcher would serve them: the fewest in
    flight per unit of weight first, ties to the oldest job (as ``_share_out`` does); owners
    whom nothing but their turn holds back before the others."""
    capacity = state.capacity
    turns = []
    for owner_id, groups in owners.items():
        held_back = all(state.held_back(store_id=g.store_id, owner_id=owner_id) for g in groups)
        turn = OwnerTurn(
            owner_id=owner_id,
            name=names.get(owner_id, "(nobody)"),
            waiting=sum(g.subjobs for g in groups),
            in_flight=capacity.owner_used[owner_id],
            weight=capacity.weight(owner_id),
            limit=capacity.owner_limit(owner_id),
            held_back=held_back,
        )
        oldest = min(g.oldest_job_id for g in groups)
        turns.append((held_back, capacity.share(owner_id), oldest, turn))
    turns.sort(key=lambda t: t[:3])
    ordered = [t[-1] for t in turns]
    if ordered and not ordered[0].held_back:
        ordered[0].is_next = True
    return PriorityQueue(
        priority=priority,
        owners=ordered[:OWNERS_SHOWN],
        more_owners=max(0, len(ordered) - OWNERS_SHOWN),
    )


def job_waiting_reason(*, job: Job, now: datetime | None = None) -> str:
    """Why an active job's sub-jobs wait, in words for the admin's job page ("store tape1 at its
    limit (2 of 2 in flight)"); "" when none of them waits for the dispatcher."""
    if job.status not in PENDING_STATUSES:
        return ""
    job_waiting = subjobs_waiting().filter(job=job)
    if job.task in UNCAPPED_TASKS or not job_waiting.exists():
        in_broker = job.subjobs.filter(status=JobStatus.NOT_STARTED, dispatched_at__isnull=False)
        return "dispatched: waiting for a worker to take it" if in_broker.exists() else ""
    state = dispatch_state()
    reason = state.reason(store_id=job.store_id, owner_id=job.owner_id, priority=job.priority)
    capacity = state.capacity
    store = state.stores[job.store_id]
    if reason == WaitReason.STAGING_AREA_FULL:
        since = timezone.localtime(store.staging_full_since)
        return f"staging area of store {store.slug} full since {since:%H:%M} ({since:%Y-%m-%d})"
    if reason == WaitReason.STORE_LIMIT:
        used = capacity.store_used[job.store_id]
        return f"store {store.slug} at its limit ({used} of {store.max_active} in flight)"
    if reason == WaitReason.OWNER_LIMIT:
        used, limit = capacity.owner_used[job.owner_id], capacity.owner_limit(job.owner_id)
        return f"owner {job.owner} at their limit ({used} of {limit} in flight)"
    if reason == WaitReason.HIGHER_PRIORITY:
        return (
            f"priority {state.top_priority} jobs first "
            f"(all {capacity.bound} dispatch slots taken; this job is priority {job.priority})"
        )
    if reason == WaitReason.IN_FLIGHT_BOUND:
        return (
            f"all {capacity.bound} dispatch slots taken (STAGING_DISPATCH_MAX_IN_FLIGHT); "
            "next when a sub-job ends"
        )
    return "dispatched at the next pass"
