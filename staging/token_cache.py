"""A per-process memory of recently authenticated tokens, so a status poll costs no query for
who is asking.

An entry (keyed by the token's digest) holds the user with their roles and the token's expiry.
It is honoured for ``AUTH_CACHE_SECONDS`` (0: never kept): that is how late a revoked token, a
deactivated user or a changed role takes effect in one web process. Expiry stays exact: the
entry carries the token's expiry and is dropped as soon as it has passed. It lives in process
memory, not the Django cache, because a round-trip to a shared cache would cost what it saves.
A change made through this process (a token revoked, a user saved, groups changed) is forgotten
at once (receivers in staging.signals); the bound is for changes made by other processes."""

import copy
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone

# Enough for every token a site polls with; beyond it the least recently used entry goes.
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class _Entry:
    user: object
    auth_token: object
    expiry: datetime | None
    stored_at: float


class TokenCache:
    def __init__(self, max_entries: int = MAX_ENTRIES, clock=time.monotonic):
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._max_entries = max_entries
        self._clock = clock

    @staticmethod
    def lifetime() -> float:
        return settings.AUTH_CACHE_SECONDS

    def get(self, digest: str):
        """(user, auth_token) for a digest still honoured, each a copy of its own so nothing a
        request sets on them leaks into the next; None otherwise."""
        lifetime = self.lifetime()
        if lifetime <= 0:
            return None
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            fresh = self._clock() - entry.stored_at < lifetime
            unexpired = entry.expiry is None or entry.expiry >= timezone.now()
            if not (fresh and unexpired):
                del self._entries[digest]
                return None
            self._entries.move_to_end(digest)
        return copy.copy(entry.user), copy.copy(entry.auth_token)

    def put(self, digest: str, user, auth_token) -> None:
        if self.lifetime() <= 0:
            return
        entry = _Entry(copy.copy(user), copy.copy(auth_token), auth_token.expiry, self._clock())
        with self._lock:
            self._entries[digest] = entry
            self._entries.move_to_end(digest)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def forget(self, digest: str) -> None:
        with self._lock:
            self._entries.pop(digest, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


token_cache = TokenCache()
