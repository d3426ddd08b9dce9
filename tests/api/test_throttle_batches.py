"""The rate limit's counts in batches (staging.api.throttling.WindowCounter): each web process
is one counter over the shared cache. Exact under 128 per window; above, an account gets at
most limit + processes x (batch - 1) requests through a window, and a batch is one round trip."""

import random

import pytest
from django.core.cache import cache

from staging.api import throttling
from staging.api.throttling import WindowCounter

TIMEOUT = 61


def admitted(processes: list[WindowCounter], key: str, limit: int, requests: int, seed=7):
    """Requests sent in bursts to processes picked at random, as a load balancer would; how
    many each process let through."""
    rng = random.Random(seed)
    through = [0] * len(processes)
    sent = 0
    while sent < requests:
        which = rng.randrange(len(processes))
        for _ in range(min(rng.randint(1, 30), requests - sent)):
            sent += 1
            if processes[which].count(key, limit=limit, timeout=TIMEOUT) <= limit:
                through[which] += 1
    return through


def test_a_limit_under_128_a_window_is_counted_exactly_across_processes():
    processes = [WindowCounter(), WindowCounter()]
    assert sum(admitted(processes, "throttle:user:1:0", limit=100, requests=400)) == 100


@pytest.mark.parametrize("processes", [2, 4])
def test_above_it_an_account_gets_at_most_the_limit_plus_a_batch_per_process(processes):
    limit = 6400
    batch = WindowCounter.batch_size(limit)
    counters = [WindowCounter() for _ in range(processes)]

    through = sum(admitted(counters, f"throttle:user:{processes}:0", limit, requests=2 * limit))

    assert batch == 20
    assert limit <= through <= limit + processes * (batch - 1)
    # Once over, every process refuses, whatever its batch.
    assert all(
        c.count(f"throttle:user:{processes}:0", limit=limit, timeout=TIMEOUT) > limit
        for c in counters
    )


def test_a_batch_is_one_round_trip(monkeypatch):
    trips = []
    increment = throttling._increment

    def counted(key, *, by, timeout):
        trips.append(by)
        return increment(key, by=by, timeout=timeout)

    monkeypatch.setattr(throttling, "_increment", counted)
    counter = WindowCounter()
    for _ in range(200):
        counter.count("throttle:user:9:0", limit=6400, timeout=TIMEOUT)

    assert trips == [20] * 10
    assert cache.get("throttle:user:9:0") == 200


def test_a_quiet_process_adds_its_count_after_the_flush_interval(settings):
    clock_value = [0.0]
    counter = WindowCounter(clock=lambda: clock_value[0])
    for _ in range(3):
        counter.count("throttle:user:5:0", limit=6400, timeout=TIMEOUT)
    assert cache.get("throttle:user:5:0") is None

    clock_value[0] += settings.THROTTLE_FLUSH_SECONDS
    counter.count("throttle:user:5:0", limit=6400, timeout=TIMEOUT)

    assert cache.get("throttle:user:5:0") == 4


def test_a_new_window_starts_from_nothing():
    counter = WindowCounter()
    for _ in range(100):
        counter.count("throttle:user:3:0", limit=100, timeout=TIMEOUT)
    assert counter.count("throttle:user:3:60", limit=100, timeout=TIMEOUT) == 1
