"""Fixtures of the API tests: clients that know their user, and a clean throttle cache."""

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache

from staging.api.throttling import window_counter


@pytest.fixture(autouse=True)
def fresh_throttle_counters():
    cache.clear()
    window_counter.clear()
    yield
    cache.clear()
    window_counter.clear()


@pytest.fixture
def api_as(client_for):
    """``api_as(role, username=...)`` → an APIClient with that user's token; ``.user`` is the
    user."""

    def make(role: str, username: str | None = None):
        username = username or f"{role}-user"
        client = client_for(role, username=username)
        client.user = get_user_model().objects.get(username=username)
        return client

    return make
