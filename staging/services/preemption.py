"""Giving way: a running sub-job stops at a file boundary so that another owner's waiting work
gets its fair share of a full store (or of the in-flight bound) now, not when the running
sub-jobs end.

The dispatcher only hands out slots that free. A sub-job holds its slot until it ends, and a
sub-job of 50 files on a tape-like store runs for seconds or minutes: without giving way, a
newcomer's ten files wait for that, whatever the fair-share order says. So after each pass:

1. ``give_way_ask`` looks at every *pool* that is full, each store at its ``max_active`` and
   everything at ``DISPATCH_MAX_IN_FLIGHT``, at the highest priority with work waiting in it.
   Its slots are shared between the owners with work there, in flight or waiting, by weight
   (``fair_targets``); an owner holding fewer than its share while it has work waiting is
   *below* it, one holding more is *above* it. The owners above are asked to stop as many
   running sub-jobs as those below lack, plus one per message of theirs already queued in the
   broker (a slot given back goes to a message behind those, and the worker that gave way
   takes the next one). The asks are one hash in the broker's Redis,
   ``pool:owner:priority → slots``, written whole by every pass that new work or beat asks
   for, and by a submission (``dispatch.subjobs_submitted``: every worker process may be busy
   with the sub-jobs that should give way, so a pass would wait for one of them); they expire
   after a couple of dispatch periods. The pass after a sub-job's end leaves them alone: it would
   see the newcomer's sub-job queued behind the owner's queued ones and ask for nothing more.
2. A worker running a sub-job of such an owner and priority notices between two files
   (``GiveWay.asked``, at most every ``DISPATCH_YIELD_CHECK_SECONDS``: one Redis round trip),
   takes one slot of the ask (atomically, never below zero), writes its batch and hands the rest
   of its sub-job back undispatched (``transitions.subjob_give_way``). Its own dispatch pass
   after the end then gives the slot by the fair-share order, i.e. to the owner below its share.

The handed-back rest waits as any undispatched sub-job does and is dispatched again when its
owner's share allows; its finished files stay finished, so every file is staged once. Release
jobs never give way (they take no slot), nor does a sub-job before it finished one file in its
run (so each run makes progress and two owners cannot pass a slot back and forth for nothing).
Sub-jobs of a higher priority than the waiting work are never asked, and a lower priority's
are not either: giving way is within one priority (the dispatcher's order already puts higher
priorities first as slots free).
"""

import heapq
import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count

from staging.dependencies import broker_client
from staging.models import Job, JobStatus
from staging.selectors_dispatch import (
    UNCAPPED_TASKS,
    OwnerLimits,
    jobs_with_capped_work_waiting,
    subjobs_in_flight,
    subjobs_waiting,
)

logger = logging.getLogger(__name__)

# One hash of every ask, ``pool:owner:priority → slots``; a pool is a store's id, or ``all``
# for the in-flight bound over everything.
ASK_KEY = "stagingsvc.give-way"
ALL = "all"
# Asks live this many dispatch periods: a pass (beat's at the latest) writes them again.
ASK_PERIODS = 2

# Take one slot of the first ask among the fields ``ARGV`` that holds one; 1 when taken. One
# round trip, and two workers never take the same slot.
_TAKE_ONE = """
for _, field in ipairs(ARGV) do
  local left = tonumber(redis.call('HGET', KEYS[1], field) or '0')
  if left > 0 then
    redis.call('HINCRBY', KEYS[1], field, -1)
    return 1
  end
end
return 0
"""


def _key(name: str) -> str:
    """Keys carry the broker's key prefix, as the queues do (tests keep apart by it)."""
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
    return f"{prefix}{name}"


def ask_field(pool: int | str, owner_id: int | None, priority: int) -> str:
    return f"{pool}:{owner_id or 0}:{priority}"


@dataclass
class Owner:
    """One owner's stake in a pool: its weight, what it may run at most, what it runs, what it
    has dispatched but not running (queued in the broker) and what waits undispatched."""

    weight: int = 1
    limit: int | None = None
    running: int = 0
    queued: int = 0
    waiting: int = 0

    @property
    def in_flight(self) -> int:
        return self.running + self.queued

    @property
    def demand(self) -> int:
        wanted = self.in_flight + self.waiting
        return wanted if self.limit is None else min(wanted, self.limit)


def fair_targets(slots: int, owners: dict) -> dict:
    """How many of ``slots`` each owner should hold: one slot at a time to the owner with the
    fewest per unit of weight, never beyond its demand (its work, its own limit). Ties go to
    an owner already holding more than it has been given (so a share that does not divide
    evenly stays where it is, instead of passing back and forth), then to the first named."""
    targets = dict.fromkeys(owners, 0)
    order = {owner_id: n for n, owner_id in enumerate(owners)}

    def turn(owner_id):
        owner = owners[owner_id]
        given = targets[owner_id]
        return (given / (owner.weight or 1), owner.in_flight <= given, order[owner_id], owner_id)

    turns = [turn(o) for o in owners if owners[o].demand > 0]
    heapq.heapify(turns)
    for _ in range(slots):
        if not turns:
            break
        owner_id = heapq.heappop(turns)[-1]
        targets[owner_id] += 1
        if targets[owner_id] < owners[owner_id].demand:
            heapq.heappush(turns, turn(owner_id))
    return targets


def give_back(slots: int, owners: dict) -> dict:
    """Running sub-jobs each owner above its share is asked to stop (owner id → n, only
    positive). The owners below their share lack slots for their undispatched work; those
    above give them back, the most above (per unit of weight) first. A slot given back goes
    to a message at the end of the broker's queue, behind the messages already queued for
    the owner giving it (its worker takes those next): so that owner is asked for one more
    running sub-job per message it has queued."""
    targets = fair_targets(slots, owners)
    lacking = sum(
        min(targets[o], owner.demand) - owner.in_flight
        for o, owner in owners.items()
        if owner.waiting and targets[o] > owner.in_flight
    )
    above = sorted(
        ((owner.in_flight - targets[o]) / (owner.weight or 1), o)
        for o, owner in owners.items()
        if owner.in_flight > targets[o]
    )
    asks = {}
    for _, owner_id in reversed(above):
        if lacking <= 0:
            break
        owner = owners[owner_id]
        given = min(owner.in_flight - targets[owner_id], lacking)
        lacking -= given
        asks[owner_id] = min(owner.running, given + owner.queued)
    return {o: n for o, n in asks.items() if n > 0}


def give_way_ask(owners: OwnerLimits | None = None) -> set[int | str] | None:
    """After a pass: write what each full pool asks of the owners above their share (nothing
    when no pool is full or nobody lacks). Returns the pools found full (store ids, ``ALL``),
    or None when giving way is off or the asks could not be written. Never raises: without
    asks nothing gives way, and the next pass asks again. ``owners``: the limits the pass
    already read, so an owner's are read once."""
    if not settings.STAGING["DISPATCH_PREEMPT"]:
        return None
    try:
        asks, full = _asks(owners if owners is not None else OwnerLimits())
        _asks_write(asks)
    except Exception:
        logger.warning("could not ask running sub-jobs to give way", exc_info=True)
        return None
    return full


def _in_flight():
    return (
        subjobs_in_flight()
        .values_list(
            "job__store_id", "job__store__max_active", "job__owner_id", "job__priority", "status"
        )
        .annotate(n=Count("pk"))
        .order_by()
    )


def _asks(owner_limits: OwnerLimits) -> tuple[dict[str, int], set[int | str]]:
    """``pool:owner:priority`` → slots, for every pool that is full and has owners below their
    share; and the pools that are full."""
    # (store, owner, priority) → [running, queued]
    held: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    limits: dict[int, int | None] = {}
    by_store = Counter()
    # One read, also at every submission: a store with nothing in flight is not full.
    for store_id, limit, owner_id, priority, status, n in _in_flight():
        held[store_id, owner_id, priority][status != JobStatus.RUNNING] += n
        limits[store_id] = limit
        by_store[store_id] += n
    full = {s for s, limit in limits.items() if limit is not None and by_store[s] >= limit}
    everything_full = by_store.total() >= settings.STAGING["DISPATCH_MAX_IN_FLIGHT"]
    if not full and not everything_full:
        return {}, set()
    waiting = _waiting_by_store_and_priority(None if everything_full else full)
    pools: list[tuple[int | str, set[int]]] = [(s, {s}) for s in full]
    if everything_full:
        # A slot given back under the bound goes to a store with room under its own limit.
        pools.append((ALL, {s for s, _ in waiting if s not in full}))
    asks: dict[str, int] = {}
    for pool, stores in pools:
        pool_waiting = {k: v for k, v in waiting.items() if k[0] in stores}
        if not pool_waiting:
            continue
        top = max(priority for _, priority in pool_waiting)
        owners: dict[int | None, Owner] = {}
        for (_, priority), waiting_owners in pool_waiting.items():
            for owner_id in waiting_owners if priority == top else ():
                owners.setdefault(owner_id, Owner())
        for (store_id, owner_id, priority), (running, queued) in held.items():
            if priority == top and (pool == ALL or store_id in stores):
                owner = owners.setdefault(owner_id, Owner())
                owner.running += running
                owner.queued += queued
        if len(owners) < 2:
            continue  # an owner alone never gives way to itself
        owner_limits.learn(owners)
        for owner_id, owner in owners.items():
            owner.weight, owner.limit = owner_limits.of(owner_id)
        _waiting_count(owners, stores, top, pool_waiting)
        slots = sum(owner.in_flight for owner in owners.values())
        for owner_id, n in give_back(slots, owners).items():
            asks[ask_field(pool, owner_id, top)] = n
    return asks, full | ({ALL} if everything_full else set())


def _waiting_by_store_and_priority(stores: set[int] | None) -> dict[tuple, list]:
    """(store, priority) → owners with undispatched work there, oldest job first."""
    jobs = jobs_with_capped_work_waiting()
    if stores is not None:
        jobs = jobs.filter(store_id__in=stores)
    found: dict[tuple, list] = defaultdict(list)
    for store_id, priority, owner_id in jobs.order_by("pk").values_list(
        "store_id", "priority", "owner_id"
    ):
        if owner_id not in found[store_id, priority]:
            found[store_id, priority].append(owner_id)
    return found


def _waiting_count(owners: dict, stores: set[int], priority: int, pool_waiting: dict) -> None:
    """How many undispatched sub-jobs each waiting owner has in the pool, counted up to what
    the pool's slots could take (a count of 100,000 waiting would tell nothing more)."""
    cap = sum(owner.running + owner.queued for owner in owners.values())
    waiting_owners = {o for (_, p), found in pool_waiting.items() if p == priority for o in found}
    for owner_id in waiting_owners:
        owners[owner_id].waiting = (
            subjobs_waiting()
            .filter(job__store_id__in=stores, job__owner_id=owner_id, job__priority=priority)
            .exclude(job__task__in=UNCAPPED_TASKS)[:cap]
            .count()
        )


def _asks_write(asks: dict[str, int]) -> None:
    """Replace every ask at once (one that is not made again is withdrawn)."""
    client = broker_client()
    if client is None:
        return
    key = _key(ASK_KEY)
    ttl = max(1, round(ASK_PERIODS * settings.STAGING["DISPATCH_INTERVAL_SECONDS"]))
    with client.pipeline() as pipe:  # MULTI: a worker never reads half of the new asks
        pipe.delete(key)
        if asks:
            pipe.hset(key, mapping=asks)
            pipe.expire(key, ttl)
        pipe.execute()


class GiveWay:
    """Whether the running sub-job should give way, asked between two files: at most every
    DISPATCH_YIELD_CHECK_SECONDS, and only once it finished a file in this run."""

    def __init__(self, job: Job):
        # Its store's ask first, then the in-flight bound's.
        self.fields = [ask_field(pool, job.owner_id, job.priority) for pool in (job.store_id, ALL)]
        self.every = settings.STAGING["DISPATCH_YIELD_CHECK_SECONDS"]
        self.client = None
        if settings.STAGING["DISPATCH_PREEMPT"] and job.task not in UNCAPPED_TASKS:
            self.client = broker_client()
        self.checked_at = time.monotonic()

    def asked(self, *, files_done: int) -> bool:
        """True when this run should stop here and give its slot back: its owner is asked to
        give back a slot of its store or of the bound (the slot is then taken: no other
        sub-job gives it too)."""
        if self.client is None or files_done == 0:
            return False
        now = time.monotonic()
        if now - self.checked_at < self.every:
            return False
        self.checked_at = now
        try:
            return bool(self.client.eval(_TAKE_ONE, 1, _key(ASK_KEY), *self.fields))
        except Exception as exc:  # the broker away: run on, as without asks
            logger.info("could not read the asks to give way: %s", exc)
            return False


def asks_pending() -> dict[str, int]:
    """The asks in force, ``pool:owner:priority`` → slots (for tests and operators)."""
    client = broker_client()
    if client is None:
        return {}
    return {f.decode(): int(v) for f, v in client.hgetall(_key(ASK_KEY)).items()}
