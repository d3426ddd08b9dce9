"""Per-user request throttling with fixed windows: one counter per user and window in the cache,
so a throttled poll costs one cache increment rather than a list of every recent request.

Rates come from REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] (settings, from the environment) and are
read on every request, so a changed setting applies at once."""

import time

from django.core.cache import cache
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """ "120/min" → (120, 60); None or "" → no limit."""
    if not rate:
        return None
    count, _, period = rate.partition("/")
    return int(count), _UNITS[period.strip()[:1].lower()]


class UserRateThrottle(BaseThrottle):
    """Counts every request of an authenticated user in the ``scope``'s window."""

    scope = "user"

    def __init__(self):
        self.retry_after: float | None = None

    def applies_to(self, request, view) -> bool:
        return True

    def allow_request(self, request, view) -> bool:
        user = request.user
        if user is None or not user.is_authenticated or not self.applies_to(request, view):
            return True
        rate = parse_rate(api_settings.DEFAULT_THROTTLE_RATES.get(self.scope))
        if rate is None:
            return True
        limit, window = rate
        now = time.time()
        window_start = int(now // window) * window
        key = f"throttle:{self.scope}:{user.pk}:{window_start}"
        cache.add(key, 0, timeout=window + 1)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=window + 1)
            count = 1
        if count <= limit:
            return True
        self.retry_after = window_start + window - now
        return False

    def wait(self) -> float | None:
        return self.retry_after


class SubmitRateThrottle(UserRateThrottle):
    """A tighter budget for requests that create jobs (POST only)."""

    scope = "submit"

    def applies_to(self, request, view) -> bool:
        return request.method == "POST"
