"""Request throttling with fixed windows: one counter per account (or anonymous address) and
window in the cache, so a throttled poll costs one cache increment rather than a list of every
recent request.

An account's rates are its limits (``staging.selectors_accounts.limits_of``: per user and per
role in the admin, then per role and site-wide in the settings), read with the token, so a
changed limit applies within AUTH_CACHE_SECONDS. Anonymous requests (the public schema, docs
and tape discovery) count per client address at REST_FRAMEWORK's ``anon`` rate. A 429 always
says when to come back (``Retry-After``, at least one second).

Each web process counts in its own memory and adds its count to the shared counter in batches
(``WindowCounter``): a status poll then pays the cache's round trip once per batch, not per
request. A batch is at most 1/64 of the limit (so a limit under 128 per window is counted
exactly, every request) and at most THROTTLE_BATCH requests, and is sent at least every
THROTTLE_FLUSH_SECONDS. The price is a bound, not a drift: in one window an account gets at most
``limit + processes x (batch - 1)`` requests through, e.g. 1200/minute on 4 web processes at
most 1,276; a refusal is always right (the process's own count plus the shared one it last saw
is a lower bound of the true count), and a 429 always reaches the shared counter at once."""

import math
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from staging.selectors_accounts import limits_of, parse_rate


def _increment(key: str, *, by: int, timeout: int) -> int:
    """The shared counter after adding ``by``. On Redis (the shared cache production requires)
    one round trip: INCRBY and EXPIRE in one pipeline, where the cache's add + incr take three
    (SET NX, then EXISTS and INCRBY). EXPIRE on every flush only pushes the key's end later;
    its name carries its window, so a late expiry never counts into another."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        full_key = backend.make_and_validate_key(key)
        pipeline = backend._cache.get_client(full_key, write=True).pipeline(transaction=False)
        count, _ = pipeline.incrby(full_key, by).expire(full_key, timeout).execute()
        return count
    backend.add(key, 0, timeout=timeout)
    try:
        return backend.incr(key, by)
    except ValueError:  # expired between add and incr
        backend.add(key, by, timeout=timeout)
        return by


# Beyond this many windows in memory, the ended ones are dropped as new ones begin.
MAX_WINDOWS = 10_000


@dataclass
class _Window:
    seen: int = 0  # the shared counter after this process's last flush
    pending: int = 0  # counted here since then
    flushed_at: float = 0.0
    ends_at: float = 0.0


class WindowCounter:
    """This process's counts of the windows in use, added to the shared counters in batches
    (see the module's docstring for the bound)."""

    def __init__(self, clock=time.monotonic):
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()
        self._clock = clock

    @staticmethod
    def batch_size(limit: int) -> int:
        return max(1, min(settings.THROTTLE_BATCH, limit // 64))

    def count(self, key: str, *, limit: int, timeout: int) -> int:
        """Counts one request under ``key``; returns the best known count (a lower bound of
        the true one: the shared count last seen plus this process's since)."""
        now = self._clock()
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                self._forget_ended(key, now)
                window = self._windows[key] = _Window(flushed_at=now, ends_at=now + timeout)
            window.pending += 1
            estimate = window.seen + window.pending
            due = (
                window.pending >= self.batch_size(limit)
                or estimate > limit
                or now - window.flushed_at >= settings.THROTTLE_FLUSH_SECONDS
            )
            if not due:
                return estimate
            by, window.pending = window.pending, 0
        # Outside the lock: the round trip must not hold up the process's other threads.
        seen = _increment(key, by=by, timeout=timeout)
        with self._lock:
            window.seen = seen
            window.flushed_at = now
            return window.seen + window.pending

    def _forget_ended(self, key: str, now: float) -> None:
        """A new window began for a key: the counts of its ended ones go (their pending counts
        with them, which only ever under-counts a window that is over); so do any others that
        ended, once there are many (every client address counts under a key of its own)."""
        prefix = key.rpartition(":")[0] + ":"
        many = len(self._windows) >= MAX_WINDOWS
        for ended, window in list(self._windows.items()):
            if ended.startswith(prefix) or (many and window.ends_at < now):
                del self._windows[ended]

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()


window_counter = WindowCounter()


class _WindowThrottle(BaseThrottle):
    scope = ""

    def __init__(self):
        self.retry_after: float | None = None

    def _count(self, ident: str, rate: str | None) -> bool:
        parsed = parse_rate(rate)
        if parsed is None:
            return True
        limit, window = parsed
        now = time.time()
        window_start = int(now // window) * window
        key = f"throttle:{self.scope}:{ident}:{window_start}"
        count = window_counter.count(key, limit=limit, timeout=window + 1)
        if count <= limit:
            return True
        self.retry_after = window_start + window - now
        return False

    def wait(self) -> float | None:
        if self.retry_after is None:
            return None
        return max(1, math.ceil(self.retry_after))


class UserRateThrottle(_WindowThrottle):
    """Counts every request of an authenticated account against its request rate."""

    scope = "user"
    limit_name = "request_rate"

    def applies_to(self, request, view) -> bool:
        return True

    def allow_request(self, request, view) -> bool:
        user = request.user
        if user is None or not user.is_authenticated or not self.applies_to(request, view):
            return True
        return self._count(str(user.pk), getattr(limits_of(user), self.limit_name))


class SubmitRateThrottle(UserRateThrottle):
    """A tighter budget for requests that create jobs (POST only)."""

    scope = "submit"
    limit_name = "submit_rate"

    def applies_to(self, request, view) -> bool:
        return request.method == "POST"


class AnonRateThrottle(_WindowThrottle):
    """Requests without an account, per client address (``NUM_PROXIES`` says which address of
    X-Forwarded-For to believe)."""

    scope = "anon"

    def allow_request(self, request, view) -> bool:
        if request.user is not None and request.user.is_authenticated:
            return True
        return self._count(self.get_ident(request), api_settings.DEFAULT_THROTTLE_RATES.get("anon"))
