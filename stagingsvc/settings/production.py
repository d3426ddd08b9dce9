"""Production settings: ``DJANGO_SETTINGS_MODULE=stagingsvc.settings.production``.

The service runs behind a TLS-terminating reverse proxy (nginx, a cloud load balancer, a
Kubernetes ingress) that speaks plain HTTP to gunicorn and sets ``X-Forwarded-Proto``. It
refuses to start without the settings a public deployment cannot guess: SECRET_KEY (50+
random characters), ALLOWED_HOSTS, DATABASE_URL (PostgreSQL), CELERY_BROKER_URL (Redis),
CACHE_URL (a cache every web process shares, so that rate limits count across them) and
METRICS_TOKEN (the scrape token of /metrics); the laptop defaults (a key kept under var/,
SQLite, an embedded broker, a per-process cache, open metrics) never reach production by
accident.
"""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import TRUSTED_PROXY, env, logging_config


def _required(name: str) -> str:
    value = env(name, default="")
    if not value:
        raise ImproperlyConfigured(
            f"{name} must be set in production (stagingsvc.settings.production); "
            "see docs/deployment.md."
        )
    return value


SECRET_KEY = _required("SECRET_KEY")
if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
    raise ImproperlyConfigured(
        "SECRET_KEY must be at least 50 random characters in production, e.g. the output of "
        "python3 -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )
ALLOWED_HOSTS = [host.strip() for host in _required("ALLOWED_HOSTS").split(",") if host.strip()]
_required("DATABASE_URL")
_required("CELERY_BROKER_URL")
if _required("CACHE_URL").startswith(("locmem", "dummy")):
    raise ImproperlyConfigured(
        "CACHE_URL must name a cache every web process shares in production (e.g. "
        "redis://redis:6379/1): throttles and rate limits count there."
    )
METRICS_TOKEN = _required("METRICS_TOKEN")
DEBUG = False

# --- TLS terminated in front of gunicorn ----------------------------------------------------

# With TRUSTED_PROXY=true (see base) the proxy's X-Forwarded-Proto: https is believed; the proxy
# must also drop that header from clients, or a client could claim https over plain HTTP.
# Without a trusted proxy every request looks like plain HTTP, so redirecting to https would
# loop: the redirect then follows TRUSTED_PROXY unless set on its own.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=TRUSTED_PROXY)
# Probes and scrapes come straight to the pod or host over plain HTTP, without the proxy.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# One JSON object per line unless told otherwise, for the log collector.
LOGGING = logging_config(
    fmt=env("LOG_FORMAT", default="json"), level=env("LOG_LEVEL", default="INFO")
)
