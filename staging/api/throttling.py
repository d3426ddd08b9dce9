"""Request throttling with fixed windows: one counter per account (or anonymous address) and
window in the cache, so a throttled poll costs one cache increment rather than a list of every
recent request.

An account's rates are its limits (``staging.selectors_accounts.limits_of``: per user and per
role in the admin, then per role and site-wide in the settings), read with the token, so a
changed limit applies within AUTH_CACHE_SECONDS. Anonymous requests (the public schema, docs
and tape discovery) count per client address at REST_FRAMEWORK's ``anon`` rate. A 429 always
says when to come back (``Retry-After``, at least one second)."""

import math
import time

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from staging.selectors_accounts import limits_of, parse_rate


def _increment(key: str, *, timeout: int) -> int:
    """The window's counter after counting this request. On Redis (the shared cache production
    requires) one round trip: INCR and EXPIRE in one pipeline, where the cache's add + incr
    take three (SET NX, then EXISTS and INCRBY). EXPIRE on every count only pushes the key's
    end later; its name carries its window, so a late expiry never counts into another."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        full_key = backend.make_and_validate_key(key)
        pipeline = backend._cache.get_client(full_key, write=True).pipeline(transaction=False)
        count, _ = pipeline.incr(full_key).expire(full_key, timeout).execute()
        return count
    backend.add(key, 0, timeout=timeout)
    try:
        return backend.incr(key)
    except ValueError:  # expired between add and incr
        backend.add(key, 1, timeout=timeout)
        return 1


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
        count = _increment(f"throttle:{self.scope}:{ident}:{window_start}", timeout=window + 1)
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
