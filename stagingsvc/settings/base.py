"""Settings for every environment, read from the process environment (django-environ).

With no variables set, the service runs on embedded defaults that need no server: SQLite and a
private redis-server on a unix socket, both under ``var/``. Setting ``DATABASE_URL`` and
``CELERY_BROKER_URL`` moves the same code onto PostgreSQL and Redis.
"""

import contextlib
import os
import secrets
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from stagingsvc.logconfig import logging_config
from stagingsvc.process_priority import parse_ionice

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

VAR_DIR = Path(env("STAGINGSVC_VAR_DIR", default=str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)


def local_secret_key(key_file: Path) -> str:
    """A random key kept in ``key_file``, so sessions survive restarts of a laptop install.
    The key is written to a private temporary file (0600 from its creation, whatever the umask)
    and linked into place, which fails if another process got there first: nobody ever reads
    a half-written key or one that others may read, and concurrent starts agree on one key."""
    if not key_file.exists():
        temporary = key_file.with_name(f".{key_file.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(50))
                handle.flush()
                os.fsync(handle.fileno())
            # Fails if another process made the key first: then theirs is the key.
            with contextlib.suppress(FileExistsError):
                os.link(temporary, key_file)
        finally:
            temporary.unlink(missing_ok=True)
    return key_file.read_text().strip()


SECRET_KEY = env("SECRET_KEY", default=None) or local_secret_key(VAR_DIR / "secret-key")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Behind a proxy that terminates TLS (TRUSTED_PROXY=true; TRUST_X_FORWARDED_PROTO is its older
# name), trust its X-Forwarded-Proto so absolute URIs the service hands out (the WLCG tape
# endpoint, Location headers) say https. Off by default: a client could otherwise forge the
# header. The proxy must drop the header from clients.
TRUSTED_PROXY = env.bool("TRUSTED_PROXY", default=False) or env.bool(
    "TRUST_X_FORWARDED_PROTO", default=False
)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUSTED_PROXY else None
# Where gunicorn listens (read by stagingsvc/gunicorn.conf.py); loopback unless told otherwise.
SERVICE_HOST = env("HOST", default="127.0.0.1")
SERVICE_PORT = env.int("PORT", default=8000)

INSTALLED_APPS = [
    # The admin with the staff dashboard (staging/admin_site.py) in place of django.contrib.admin.
    "staging.admin_site.StagingAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_results",
    "django_celery_beat",
    "health_check",
    "django_prometheus",
    "staging",
]

MIDDLEWARE = [
    # First and last, so they time the whole request (django-prometheus's HTTP metrics).
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # Before anything that reads the database: waiting requests must not starve ordinary ones.
    "stagingsvc.middleware.ThreadBudgetMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "stagingsvc.middleware.RejectNulBytesMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "stagingsvc.middleware.BrokerRequiredMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "stagingsvc.urls"
WSGI_APPLICATION = "stagingsvc.wsgi.application"
# The DTS posts to /dts/staging without a trailing slash; never redirect API calls.
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'stagingsvc.sqlite3'}")
}


def tune_database(config: dict) -> dict:
    """Per-engine options that every process (web, worker, beat) needs to share one database."""
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # WAL lets readers run beside one writer; IMMEDIATE takes the write lock at BEGIN, so
        # read-then-write transactions from several processes wait instead of failing with
        # "database is locked".
        config.setdefault("OPTIONS", {}).update(
            {
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            }
        )
    else:
        config.setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
        config.setdefault("CONN_HEALTH_CHECKS", True)
        # A server cut off by the network (no refusal, no answer) fails a new connection after
        # DATABASE_CONNECT_TIMEOUT seconds and breaks a kept one whose writes go unacknowledged
        # for DATABASE_TCP_USER_TIMEOUT_MS, so a request answers 503 and a worker starts
        # waiting for the database, instead of either hanging for minutes on TCP's own timers.
        options = config.setdefault("OPTIONS", {})
        options.setdefault("connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=5))
        options.setdefault(
            "tcp_user_timeout", env.int("DATABASE_TCP_USER_TIMEOUT_MS", default=15_000)
        )
    # The same engines, wrapped by django-prometheus to count queries and errors (django_db_*);
    # PostgreSQL's also skips the health check's SELECT 1 on a quiet socket
    # (stagingsvc.db.postgresql).
    engine = config["ENGINE"].rsplit(".", 1)[-1]
    if engine in PROMETHEUS_DB_ENGINES and config["ENGINE"].startswith("django.db.backends."):
        config["ENGINE"] = PROMETHEUS_DB_ENGINES[engine]
    return config


PROMETHEUS_DB_ENGINES = {
    "postgresql": "stagingsvc.db.postgresql",
    "sqlite3": "django_prometheus.db.backends.sqlite3",
}


tune_database(DATABASES["default"])
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth, i18n, static ---------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- REST framework -------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "staging.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["staging.api.parsers.JSONParser"],
    "DEFAULT_THROTTLE_CLASSES": [
        "staging.api.throttling.UserRateThrottle",
        "staging.api.throttling.AnonRateThrottle",
    ],
    # Site-wide defaults per account: every call, and the calls that create jobs; roles and
    # users may have their own (ACCOUNT_LIMITS below, and the admin). Anonymous calls (schema,
    # docs, tape discovery) per client address: gfal2 reads the tape discovery document before
    # each operation, so one FTS3 host asks it often. "N/second|minute|hour|day"; empty: off.
    "DEFAULT_THROTTLE_RATES": {
        "user": env("API_THROTTLE_RATE", default="1200/minute") or None,
        "submit": env("API_SUBMIT_THROTTLE_RATE", default="120/minute") or None,
        "anon": env("API_ANON_THROTTLE_RATE", default="1200/minute") or None,
    },
    # Behind this many proxies, the client address is that many hops back in
    # X-Forwarded-For (None: REMOTE_ADDR). Only set it when a proxy you run adds the header.
    "NUM_PROXIES": env.int("TRUSTED_PROXY_HOPS", default=0) or None,
    "DEFAULT_SCHEMA_CLASS": "staging.api.openapi.StagingAutoSchema",
    "EXCEPTION_HANDLER": "stagingsvc.exceptions.problem_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

# Limits per account. An AccountLimits row in the admin (for a role, or for one user) overrides
# these field by field; a user with several roles gets the most generous. None: no limit.
ACCOUNT_LIMITS = {
    # Defaults per role. A service account (the DTS, FTS3) polls every pending request of all
    # its users: 12,000 pending requests polled once a minute is 200 requests/s.
    "ROLES": {
        "service-user": {
            "request_rate": env("SERVICE_USER_THROTTLE_RATE", default="30000/minute"),
            "submit_rate": env("SERVICE_USER_SUBMIT_THROTTLE_RATE", default="6000/minute"),
            "max_active_jobs": env.int("SERVICE_USER_MAX_ACTIVE_JOBS", default=50_000),
            "max_active_files": env.int("SERVICE_USER_MAX_ACTIVE_FILES", default=5_000_000),
        },
    },
    # Everyone else (request rates: API_THROTTLE_RATE and API_SUBMIT_THROTTLE_RATE above).
    "DEFAULT": {
        "max_active_jobs": env.int("MAX_ACTIVE_JOBS_PER_USER", default=1000),
        "max_active_files": env.int("MAX_ACTIVE_FILES_PER_USER", default=1_000_000),
        "max_active_bytes": env.int("MAX_ACTIVE_BYTES_PER_USER", default=0) or None,
        "max_concurrent_scans": env.int("MAX_CONCURRENT_SCANS_PER_USER", default=2),
    },
    # Retry-After of a 429 for a limit of work in flight (jobs end in their own time).
    "RETRY_AFTER_SECONDS": env.int("ACCOUNT_LIMIT_RETRY_AFTER_SECONDS", default=60),
}

# Request bodies declaring more than this are refused with 413 before they are read (Django's
# own check, which DRF's JSON parsing goes through); 10,000 ids or paths fit comfortably.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BODY_BYTES", default=5 * 1024**2)

# Throttle counters live here: a shared cache (e.g. redis://host:6379/1) makes the limits hold
# across web processes; the default counts per process.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
# Each web process adds its requests to those counters in batches of at most this many (and at
# most 1/64 of the limit: a limit under 128 per window is counted exactly), at least every
# THROTTLE_FLUSH_SECONDS: one round trip per batch instead of per request, for an account
# getting at most limit + processes x (batch - 1) requests through in a window. 1: exact.
THROTTLE_BATCH = env.int("THROTTLE_BATCH", default=20)
THROTTLE_FLUSH_SECONDS = env.float("THROTTLE_FLUSH_SECONDS", default=1.0)

SPECTACULAR_SETTINGS = {
    "TITLE": "stagingsvc API",
    "DESCRIPTION": (
        "Stage files from archive stores into a staging area. API v1 (jobs, task status, "
        "sub-jobs, the task catalogue), the O-RAN data-job sub-job paths, the KBase DTS "
        "provider contract, DuraCloud's DuraStore task calls, the WLCG Tape REST API and the "
        "health probes. Every error is an RFC 9457 problem document "
        "(application/problem+json), except DuraStore's, which are text as DuraCloud's are."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # validatorUrl None: the UI never calls validator.swagger.io (the docs work offline).
    "SWAGGER_UI_SETTINGS": {
        "deepLinking": True,
        # A token typed into the docs page lives only as long as the page: never in the
        # browser's localStorage, where any script of this origin could read it later.
        "persistAuthorization": False,
        "validatorUrl": None,
    },
    "ENUM_NAME_OVERRIDES": {"JobStatusEnum": "staging.models.JobStatus"},
    "PREPROCESSING_HOOKS": ["staging.api.openapi.spell_routes_as_specified"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "staging.api.openapi.add_problem_responses",
    ],
}

# Tokens are stored hashed and expire after TOKEN_TTL_HOURS (90 days by default); 0: a token
# lives until it is revoked (an operator's choice, e.g. for a service account's token).
_token_ttl_hours = env.int("TOKEN_TTL_HOURS", default=90 * 24)
REST_KNOX = {
    "AUTH_HEADER_PREFIX": "Bearer",
    "TOKEN_TTL": timedelta(hours=_token_ttl_hours) if _token_ttl_hours else None,
    "AUTO_REFRESH": False,
}
# How long one web process may honour a token it has checked (with its user's roles) without
# asking the database again: the bound on how late a revocation, a deactivated user or a role
# change takes effect. A token's expiry is always exact. 0: every request reads the database.
AUTH_CACHE_SECONDS = env.float("AUTH_CACHE_SECONDS", default=5)

# --- Celery ---------------------------------------------------------------------------------

EMBEDDED_REDIS_SOCKET = VAR_DIR / "redis.sock"
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=f"redis+socket://{EMBEDDED_REDIS_SOCKET}")
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_TASK_TRACK_STARTED = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
# A worker lost mid-task gives its sub-job back to the broker; the DB lease keeps a second
# delivery from running it twice.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Redis hands an unacknowledged message out again after this long even if its worker is busy;
# sub-jobs are sized to finish well within it, and the lease makes a redelivery harmless.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
}
# A request that would create work first pings the broker for this long (see
# stagingsvc.middleware); while it does not answer, or the database does not, every request
# that needs it answers 503 with this Retry-After.
BROKER_PING_TIMEOUT_SECONDS = env.float("BROKER_PING_TIMEOUT_SECONDS", default=1.0)
UNAVAILABLE_RETRY_AFTER_SECONDS = env.int("UNAVAILABLE_RETRY_AFTER_SECONDS", default=10)
# A worker that loses the database waits this long for it to come back before its task fails
# (tasks.database, staging.services.execution); nothing fails for a shorter outage.
DATABASE_OUTAGE_WAIT_SECONDS = env.int("DATABASE_OUTAGE_WAIT_SECONDS", default=300)
# Publishing happens inside HTTP requests: give up quickly and let the reconciler re-dispatch.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}
CELERY_TASK_DEFAULT_QUEUE = "control"
# Webhook sends wait on receivers' networks: a queue and worker of their own (thread pool), so
# a slow receiver never holds up the control queue's dispatch passes and releases.
CELERY_TASK_ROUTES = {
    "tasks.staging.*": {"queue": "staging"},
    "tasks.maintenance.webhook_send": {"queue": "webhooks"},
}
# tasks/ is a plain package, not an installed app, so autodiscovery would not find it.
# tasks.instrumentation holds no task: it connects the log context and metrics signals;
# tasks.worker_priority neither: it lowers a staging worker's priority.
# tasks.database comes first: its task_prerun handler waits out a database outage before the
# other handlers (and the task) query the database.
CELERY_IMPORTS = [
    "tasks.database",
    "tasks.staging",
    "tasks.maintenance",
    "tasks.instrumentation",
    "tasks.worker_priority",
]
# Keep worker connections between tasks; tasks.database recycles them as Django does per request.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
# TaskResult rows are deleted by retention with their jobs (purge-old-jobs), not after
# Celery's default of one day, so a failed sub-job's traceback lives as long as its job.
CELERY_RESULT_EXPIRES = None
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
DISPATCH_INTERVAL_SECONDS = env.float("DISPATCH_INTERVAL_SECONDS", default=3)
CELERY_BEAT_SCHEDULE = {
    # Lease (30 s) + reaper period (10 s) + a publish: a lost worker's sub-job runs again
    # within a minute; a broker that lost its data is noticed within a reconciler period.
    # The dispatcher is also woken on every submit and every sub-job's end; this pass catches
    # what a lost wake or a raised limit leaves waiting.
    "dispatch-waiting-subjobs": {
        "task": "tasks.maintenance.dispatch_waiting_subjobs",
        "schedule": DISPATCH_INTERVAL_SECONDS,
    },
    "reap-expired-leases": {
        "task": "tasks.maintenance.reap_expired_leases",
        "schedule": env.int("REAPER_INTERVAL_SECONDS", default=10),
    },
    "reconcile-lost-subjobs": {
        "task": "tasks.maintenance.reconcile_lost_subjobs",
        "schedule": env.int("RECONCILER_INTERVAL_SECONDS", default=10),
    },
    "janitor": {
        "task": "tasks.maintenance.janitor",
        "schedule": env.int("JANITOR_INTERVAL_SECONDS", default=30),
    },
    "sweep-unpinned-copies": {
        "task": "tasks.maintenance.sweep_unpinned_copies",
        "schedule": env.int("SWEEPER_INTERVAL_SECONDS", default=300),
    },
    # Webhook deliveries whose message was lost; jobs whose staged copies expire soon.
    "resend-due-webhooks": {
        "task": "tasks.maintenance.resend_due_webhooks",
        "schedule": env.float("WEBHOOK_RESEND_INTERVAL_SECONDS", default=15),
    },
    "notify-expiring-pins": {
        "task": "tasks.maintenance.notify_expiring_pins",
        "schedule": env.float("WEBHOOK_PIN_EXPIRING_INTERVAL_SECONDS", default=300),
    },
    "purge-old-jobs": {
        "task": "tasks.maintenance.purge_old_jobs",
        "schedule": env.int("RETENTION_INTERVAL_SECONDS", default=3600),
    },
}

# --- Webhooks (staging.services.webhooks, docs/api.md#webhooks) ----------------------------

# Receivers in these networks (CIDR) may be called even though they are loopback, private,
# link-local or this host's own; nothing else in them is (SSRF, docs/security.md).
WEBHOOK_ALLOWED_NETWORKS = env.list("WEBHOOK_ALLOWED_NETWORKS", default=[])
WEBHOOK_CONNECT_TIMEOUT = env.float("WEBHOOK_CONNECT_TIMEOUT", default=5.0)
WEBHOOK_READ_TIMEOUT = env.float("WEBHOOK_READ_TIMEOUT", default=10.0)
# The whole of one attempt (connect, send, read the answer) ends within this, however slowly a
# receiver answers; a sender is then free for the next delivery.
WEBHOOK_ATTEMPT_SECONDS = env.float("WEBHOOK_ATTEMPT_SECONDS", default=10.0)
# Waits after the 1st, 2nd, … failed attempt; the last repeats. Given up after GIVE_UP_HOURS.
WEBHOOK_BACKOFF_SECONDS = [
    float(step)
    for step in env.list(
        "WEBHOOK_BACKOFF_SECONDS", default=["5", "30", "120", "600", "1800", "3600"]
    )
]
WEBHOOK_GIVE_UP_HOURS = env.float("WEBHOOK_GIVE_UP_HOURS", default=24)
# After a rotation the old secret signs too (a second signature) for this long.
WEBHOOK_SECRET_ROTATION_HOURS = env.float("WEBHOOK_SECRET_ROTATION_HOURS", default=24)
# A delivery this overdue lost its message: beat publishes it again.
WEBHOOK_RESEND_AFTER_SECONDS = env.float("WEBHOOK_RESEND_AFTER_SECONDS", default=30)
# pin.expiring is sent this long before a ready job's first pin expires.
WEBHOOK_PIN_EXPIRING_BEFORE = timedelta(
    seconds=env.float("WEBHOOK_PIN_EXPIRING_BEFORE_SECONDS", default=86400)
)

# --- Staging --------------------------------------------------------------------------------

ARCHIVE_ROOT = Path(env("ARCHIVE_ROOT", default=str(VAR_DIR / "archive")))
STAGING_ROOT = Path(env("STAGING_ROOT", default=str(VAR_DIR / "staging")))
# Store roots (admin, addstore) must lie strictly below one of these directories, so that no
# store can stage the service's own files (/etc, its secret key, its database) to clients.
STORE_ROOTS_ALLOWED = env.list(
    "STORE_ROOTS_ALLOWED",
    default=list(dict.fromkeys([str(ARCHIVE_ROOT.parent), str(STAGING_ROOT.parent)])),
)
# Results too large for a database row (a scan's list of files) are written here, one file per
# job, and deleted with their job. Every web and worker process must see the same directory.
RESULTS_ROOT = Path(env("RESULTS_ROOT", default=str(VAR_DIR / "results")))
STAGING = {
    # A request may name at most this many files. A JSON body is also bounded by
    # MAX_REQUEST_BODY_BYTES (5 MiB: about 140,000 ids); an NDJSON body (API v1 jobs, tape
    # stage) is read as it comes, so only this bounds it.
    "MAX_FILES_PER_REQUEST": env.int("STAGING_MAX_FILES_PER_REQUEST", default=1_000_000),
    # A sub-job (one Celery task) takes at most this many files or bytes.
    "SUBJOB_MAX_FILES": env.int("STAGING_SUBJOB_MAX_FILES", default=50),
    # ... or, in a staging job of a store that stages by hard link, this many files: a link
    # costs microseconds, a sub-job's claim, end and dispatch pass tens of milliseconds.
    "SUBJOB_MAX_LINKS": env.int("STAGING_SUBJOB_MAX_LINKS", default=1000),
    # Small enough that a job's large files are spread over the worker processes rather than
    # copied one after another by one of them.
    "SUBJOB_MAX_BYTES": env.int("STAGING_SUBJOB_MAX_BYTES", default=512 * 1024**2),
    # A running sub-job's lease, judged by the database's clock; a heartbeat thread of its
    # worker renews it every HEARTBEAT_SECONDS whatever the work is doing, and the reaper takes
    # back expired ones. A worker that could not renew for LEASE_SECONDS writes nothing more.
    "LEASE_SECONDS": env.int("STAGING_LEASE_SECONDS", default=30),
    "HEARTBEAT_SECONDS": env.float("STAGING_HEARTBEAT_SECONDS", default=10.0),
    # Real failures (worker lost, unexpected error) before a sub-job fails for good; hand-backs
    # at a warm shutdown do not count.
    "MAX_ATTEMPTS": env.int("STAGING_MAX_ATTEMPTS", default=3),
    # A sub-job queued this long is published again when the database has more queued
    # sub-jobs than the staging queue has messages.
    "REDISPATCH_AFTER_SECONDS": env.int("STAGING_REDISPATCH_AFTER_SECONDS", default=60),
    # Kept in the broker by the reconciler; when it is gone the broker lost its data (restarted
    # without persistence, flushed) and every queued sub-job is published again at once.
    "BROKER_MARKER_KEY": env("STAGING_BROKER_MARKER_KEY", default="stagingsvc.broker-marker"),
    # Sub-jobs handed to the broker and not yet ended, over every store and owner at once: the
    # worker processes that take staging work (hosts x concurrency) plus a small prefetch, so
    # the broker never holds more than that whatever waits in the database.
    "DISPATCH_MAX_IN_FLIGHT": env.int("STAGING_DISPATCH_MAX_IN_FLIGHT", default=16),
    # A running sub-job gives way at a file boundary to another owner's waiting work when a
    # full store (or the bound above) keeps that owner below its fair share; it checks whether
    # it is asked at most this often (one Redis round trip).
    "DISPATCH_PREEMPT": env.bool("STAGING_DISPATCH_PREEMPT", default=True),
    "DISPATCH_YIELD_CHECK_SECONDS": env.float("STAGING_DISPATCH_YIELD_CHECK_SECONDS", default=0.1),
    # How long an ask to give way lasts: a couple of beat dispatch periods.
    "DISPATCH_INTERVAL_SECONDS": DISPATCH_INTERVAL_SECONDS,
    # Progress is written at most this often per sub-job.
    "PROGRESS_INTERVAL_SECONDS": env.float("STAGING_PROGRESS_INTERVAL_SECONDS", default=1.0),
    "COPY_CHUNK_BYTES": env.int("STAGING_COPY_CHUNK_BYTES", default=8 * 1024**2),
    # The pool processes of a worker that takes the staging queue lower their CPU priority to
    # this niceness (0: unchanged) and their I/O priority to this class (best-effort:N with N
    # from 0 to 7, idle, or none: unchanged), so that the web on the same machine answers a
    # status poll without waiting for a copy. A worker of the control queue alone keeps the
    # normal priority. See docs/deployment.md, "Priorities".
    "WORKER_NICE": env.int("STAGING_WORKER_NICE", default=10),
    "WORKER_IONICE": env("STAGING_WORKER_IONICE", default="best-effort:7"),
    # Retry-After of the asynchronous API calls: how long a client should wait between polls.
    "POLL_INTERVAL_SECONDS": env.int("STAGING_POLL_INTERVAL_SECONDS", default=5),
    # How long staged copies stay pinned when a request does not say (the DTS needs 7 days).
    "DEFAULT_LIFETIME": timedelta(days=env.int("STAGING_DEFAULT_LIFETIME_DAYS", default=14)),
    # The longest pin any request may ask for, in every dialect: API v1 and the task catalogue
    # refuse more with a 400; a tape diskLifetime beyond it is shortened to it (the
    # specification makes the lifetime the client's wish).
    "MAX_LIFETIME": timedelta(days=env.int("STAGING_MAX_LIFETIME_DAYS", default=365)),
    # Finished jobs (with their items, sub-jobs, results and TaskResult rows) are deleted this
    # long after they ended; well above the 7 days the DTS may come back for a request.
    "RETENTION": timedelta(days=env.int("STAGING_RETENTION_DAYS", default=30)),
    # Jobs deleted per transaction by the purge.
    "RETENTION_BATCH": env.int("STAGING_RETENTION_BATCH", default=200),
}
# A wrong priority is refused at start, by every process, rather than found by the first worker.
try:
    parse_ionice(STAGING["WORKER_IONICE"])
except ValueError as exc:
    raise ImproperlyConfigured(f"STAGING_WORKER_IONICE: {exc}") from None
if not 0 <= STAGING["WORKER_NICE"] <= 19:
    raise ImproperlyConfigured(
        f"STAGING_WORKER_NICE: {STAGING['WORKER_NICE']} is not a niceness: use 0 (unchanged) "
        "to 19 (lowest CPU priority)"
    )

# --- Long polling and event streams ------------------------------------------------------

# A waiting status call (Prefer: wait=N) or an open event stream holds one gunicorn thread
# while it waits, so each web process runs WEB_THREADS threads for ordinary requests plus
# LIVE_CONNECTIONS for waiting ones (stagingsvc/gunicorn.conf.py reads the same variables).
# Ordinary requests never run more than WEB_THREADS at once (so never more database
# connections than today); waiting ones beyond LIVE_CONNECTIONS are served without waiting
# (long polls) or refused with 503 and Retry-After (event streams). See docs/deployment.md.
LIVE = {
    "ORDINARY_THREADS": env.int("WEB_THREADS", default=4),
    "CONNECTIONS": env.int("LIVE_CONNECTIONS", default=200),
    # Of those, one user holds at most this many (beyond: a long poll answers at once, a
    # stream is refused with 503), so one busy client cannot take every slot.
    "CONNECTIONS_PER_USER": env.int("LIVE_CONNECTIONS_PER_USER", default=20),
    # An event stream is closed after this long (the client reconnects with Last-Event-ID).
    "STREAM_MAX_SECONDS": env.float("LIVE_STREAM_MAX_SECONDS", default=300.0),
    # A request waits this long for an ordinary turn (all WEB_THREADS busy), then answers 503.
    "TURN_WAIT_SECONDS": env.float("LIVE_TURN_WAIT_SECONDS", default=30.0),
    # How often the one watcher of a web process reads the watched jobs (one query for all).
    "WATCH_INTERVAL_SECONDS": env.float("LIVE_WATCH_INTERVAL_SECONDS", default=0.05),
    # An event stream sends a comment this often while nothing happens, so proxies keep it.
    "KEEPALIVE_SECONDS": env.float("LIVE_KEEPALIVE_SECONDS", default=15.0),
    # Progress-only events of one stream are at least this far apart; status changes are not held.
    "PROGRESS_EVENT_GAP_SECONDS": env.float("LIVE_PROGRESS_EVENT_GAP_SECONDS", default=0.25),
    # Prefer: wait=N longer than this is shortened to it (RFC 7240 leaves the limit to us).
    "MAX_WAIT_SECONDS": 60,
}

# --- Metrics --------------------------------------------------------------------------------

# With a token, GET /metrics needs "Authorization: Bearer <token>"; without, it is open (the
# production settings require one).
METRICS_TOKEN = env("METRICS_TOKEN", default="")
# A scrape is answered from the cache for this long: it runs GROUP BYs over every job.
METRICS_CACHE_SECONDS = env.int("METRICS_CACHE_SECONDS", default=5)
# django-prometheus would query the migration table at start-up; readiness covers the DB.
PROMETHEUS_EXPORT_MIGRATIONS = False
# Several processes (gunicorn's, a worker's pool) count into files under this directory, one
# directory per process group; prometheus_client needs it to exist before the first metric.
PROMETHEUS_MULTIPROC_DIR = env("PROMETHEUS_MULTIPROC_DIR", default="")
if PROMETHEUS_MULTIPROC_DIR:
    Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)

# --- WLCG Tape REST API ---------------------------------------------------------------------

TAPE = {
    # What /.well-known/wlcg-tape-rest-api calls this site; targetedMetadata under this key is
    # kept on the job, metadata for other sites is ignored.
    "SITENAME": env("TAPE_SITENAME", default="stagingsvc"),
    "DESCRIPTION": env("TAPE_DESCRIPTION", default="stagingsvc: WLCG Tape REST API v1"),
}

# --- Logging --------------------------------------------------------------------------------

# LOG_FORMAT=json writes one JSON object per line; lines written during a task carry job_id,
# subjob_id, task_id and worker_host (stagingsvc.logconfig, tasks.instrumentation).
LOG_FORMAT = env("LOG_FORMAT", default="plain")
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOGGING = logging_config(fmt=LOG_FORMAT, level=LOG_LEVEL)
