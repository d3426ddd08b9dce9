"""Settings of benchmark runs: the service's own production settings, moved onto a dedicated
PostgreSQL database and Redis key prefix so a run can never touch a test run's rows or queues,
plus the bench-only URLs (baseline views) and Celery task (a no-op). Nothing here is used by
the service itself."""

from stagingsvc.settings.base import *  # noqa: F403
from stagingsvc.settings.base import (
    ACCOUNT_LIMITS,
    CELERY_BROKER_TRANSPORT_OPTIONS,
    CELERY_IMPORTS,
    REST_FRAMEWORK,
    env,
    tune_database,
)

BENCH_POSTGRES_URL = env("BENCH_POSTGRES_URL", default="postgres://postgres@127.0.0.1:5432")
# Which of the bench databases this process uses (the harness sets it per subprocess).
BENCH_DATABASE = env("BENCH_DATABASE", default="stagingsvc_bench")
DATABASES = {"default": env.db_url_config(f"{BENCH_POSTGRES_URL}/{BENCH_DATABASE}")}
tune_database(DATABASES["default"])

CELERY_BROKER_URL = env("BENCH_REDIS_URL", default="redis://127.0.0.1:6379/0")
BROKER_KEY_PREFIX = "stagingsvc-bench:"
CELERY_BROKER_TRANSPORT_OPTIONS = {
    **CELERY_BROKER_TRANSPORT_OPTIONS,
    "global_keyprefix": BROKER_KEY_PREFIX,
}
CELERY_IMPORTS = [*CELERY_IMPORTS, "bench.noop_tasks"]

# Production refuses a per-process cache (rate limits count in a shared one): the bench's web
# processes count in Redis too, so the throttle's round trip is in what P1 and P9 measure.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": CELERY_BROKER_URL,
        "KEY_PREFIX": f"{BROKER_KEY_PREFIX}cache",
    }
}

# One bench user polls far faster than any client should: the throttle stays in the code path
# (its cost is measured) with limits a run cannot reach.
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {
        **REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {}),
        "user": "1000000000/day",
        "submit": "1000000000/day",
    },
}

# Nor can its jobs in flight reach a per-user limit (the check itself stays in the code path).
ACCOUNT_LIMITS = {
    **ACCOUNT_LIMITS,
    "DEFAULT": {name: None for name in ACCOUNT_LIMITS["DEFAULT"]},
}

ROOT_URLCONF = "bench.urls"
# "testserver": the harness also drives views in-process to count their queries.
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

# W1's receiver listens on loopback, which webhooks may otherwise never call.
WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]

# W2 and W3 watch hundreds of jobs as one bench user: the per-user share of waiting slots
# (a fairness rule between users) would hold them to a few; the slots per process still bound.
LIVE = {**LIVE, "CONNECTIONS_PER_USER": LIVE["CONNECTIONS"]}  # noqa: F405
