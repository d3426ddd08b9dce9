"""Test settings: PostgreSQL and Redis when they answer (always in CI), else SQLite.

Every checkout gets its own database name and broker key prefix, so test runs of different
checkouts on one machine never share queues or rows."""

import hashlib
import socket
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import BASE_DIR, CELERY_BROKER_TRANSPORT_OPTIONS, REST_FRAMEWORK, env, tune_database

CI = env.bool("CI", default=False)
CHECKOUT_ID = hashlib.sha1(str(BASE_DIR).encode()).hexdigest()[:8]
SECRET_KEY = "test-only-secret-key-not-for-production-use-0123456789"
ALLOWED_HOSTS = ["*"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def answers(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or default_port), timeout=1):
            return True
    except OSError:
        return False


TEST_DATABASE_URL = env(
    "TEST_DATABASE_URL", default=f"postgres://postgres@127.0.0.1:5432/stagingsvc_{CHECKOUT_ID}"
)
TEST_REDIS_URL = env("TEST_REDIS_URL", default="redis://127.0.0.1:6379/0")
POSTGRES_AVAILABLE = answers(TEST_DATABASE_URL, 5432)
REDIS_AVAILABLE = answers(TEST_REDIS_URL, 6379)
if CI and not (POSTGRES_AVAILABLE and REDIS_AVAILABLE):
    raise ImproperlyConfigured(
        f"CI runs the integration tier on real services, but PostgreSQL ({TEST_DATABASE_URL}: "
        f"{'up' if POSTGRES_AVAILABLE else 'DOWN'}) or Redis ({TEST_REDIS_URL}: "
        f"{'up' if REDIS_AVAILABLE else 'DOWN'}) does not answer."
    )

if POSTGRES_AVAILABLE:
    DATABASES = {"default": env.db_url_config(TEST_DATABASE_URL)}
else:
    _sqlite = f"/tmp/stagingsvc-test-{CHECKOUT_ID}.sqlite3"
    DATABASES = {"default": env.db_url_config(f"sqlite:///{_sqlite}")}
    DATABASES["default"]["TEST"] = {"NAME": _sqlite}
tune_database(DATABASES["default"])
# Worker processes started by the tests connect to the database pytest-django created.
if env("STAGINGSVC_TEST_DB_NAME", default=""):
    DATABASES["default"]["NAME"] = env("STAGINGSVC_TEST_DB_NAME")
# Connections are not kept, except by a server a test starts to count them as production keeps
# them (tests/integration/test_live_status.py).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("STAGINGSVC_TEST_CONN_MAX_AGE", default=0)

CELERY_BROKER_URL = TEST_REDIS_URL
# Without Redis (a laptop, never CI) the API tests still submit jobs, which then wait unpublished
# as before; the refusal itself is tested with the middleware put back (test_service_unavailable).
if not REDIS_AVAILABLE:
    MIDDLEWARE = [m for m in MIDDLEWARE if m != "stagingsvc.middleware.BrokerRequiredMiddleware"]  # noqa: F405
BROKER_KEY_PREFIX = env("STAGINGSVC_TEST_KEY_PREFIX", default=f"stagingsvc-test-{CHECKOUT_ID}:")
CELERY_BROKER_TRANSPORT_OPTIONS = {
    **CELERY_BROKER_TRANSPORT_OPTIONS,
    "global_keyprefix": BROKER_KEY_PREFIX,
}
# Let tests publish without hanging when no broker is reachable.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_MAX_RETRIES = 1

# Tests make many calls as one user; the throttling tests set their own small rates.
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {
        "user": "100000/minute",
        "submit": "100000/minute",
        "anon": "100000/minute",
    },
}
# Scrapes see every change at once (the caching has its own test).
METRICS_CACHE_SECONDS = 0
# Static files (the docs UI's assets) straight from the apps, without collectstatic.
WHITENOISE_USE_FINDERS = True

# The suite never runs collectstatic; an existing (empty) root keeps whitenoise from warning.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
