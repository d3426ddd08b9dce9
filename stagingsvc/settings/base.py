"""Settings for every environment, read from the process environment (django-environ).

With no variables set, the service runs on embedded defaults that need no server: SQLite and a
private redis-server on a unix socket, both under ``var/``. Setting ``DATABASE_URL`` and
``CELERY_BROKER_URL`` moves the same code onto PostgreSQL and Redis.
"""

import secrets
from datetime import timedelta
from pathlib import Path

import environ

from stagingsvc.logconfig import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

VAR_DIR = Path(env("STAGINGSVC_VAR_DIR", default=str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _local_secret_key() -> str:
    """A random key kept under var/, so sessions survive restarts of a laptop install."""
    key_file = VAR_DIR / "secret-key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = env("SECRET_KEY", default=None) or _local_secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Behind a proxy that terminates TLS, trust its X-Forwarded-Proto so absolute URIs the service
# hands out (the WLCG tape endpoint, Location headers) say https. Off by default: a client could
# otherwise forge the header.
if env.bool("TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
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
    "django.middleware.security.SecurityMiddleware",
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
    # The same engines, wrapped by django-prometheus to count queries and errors (django_db_*).
    engine = config["ENGINE"].rsplit(".", 1)[-1]
    if engine in PROMETHEUS_DB_ENGINES and config["ENGINE"].startswith("django.db.backends."):
        config["ENGINE"] = f"django_prometheus.db.backends.{engine}"
    return config


PROMETHEUS_DB_ENGINES = {"postgresql", "sqlite3"}


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
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_THROTTLE_CLASSES": ["staging.api.throttling.UserRateThrottle"],
    # Per user: every call, and the calls that create jobs. "N/second|minute|hour|day"; empty: off.
    "DEFAULT_THROTTLE_RATES": {
        "user": env("API_THROTTLE_RATE", default="1200/minute") or None,
        "submit": env("API_SUBMIT_THROTTLE_RATE", default="120/minute") or None,
    },
    "DEFAULT_SCHEMA_CLASS": "staging.api.openapi.StagingAutoSchema",
    "EXCEPTION_HANDLER": "stagingsvc.exceptions.problem_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

# Request bodies declaring more than this are refused with 413 before they are read (Django's
# own check, which DRF's JSON parsing goes through); 10,000 ids or paths fit comfortably.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BODY_BYTES", default=5 * 1024**2)

# Throttle counters live here: a shared cache (e.g. redis://host:6379/1) makes the limits hold
# across web processes; the default counts per process.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

SPECTACULAR_SETTINGS = {
    "TITLE": "stagingsvc API",
    "DESCRIPTION": (
        "Stage files from archive stores into a staging area. API v1 (jobs, task status, "
        "sub-jobs), the seed-002 sub-job paths and the KBase DTS provider contract. Every "
        "error is an RFC 9457 problem document (application/problem+json)."
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
        "persistAuthorization": True,
        "validatorUrl": None,
    },
    "ENUM_NAME_OVERRIDES": {"JobStatusEnum": "staging.models.JobStatus"},
    "PREPROCESSING_HOOKS": ["staging.api.openapi.exclude_foreign_specifications"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "staging.api.openapi.add_problem_responses",
    ],
}

# Tokens are stored hashed; a token lives until it is revoked unless TOKEN_TTL_HOURS is set.
_token_ttl_hours = env.int("TOKEN_TTL_HOURS", default=0)
REST_KNOX = {
    "AUTH_HEADER_PREFIX": "Bearer",
    "TOKEN_TTL": timedelta(hours=_token_ttl_hours) if _token_ttl_hours else None,
    "AUTO_REFRESH": False,
}

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
CELERY_TASK_ROUTES = {"tasks.staging.*": {"queue": "staging"}}
# tasks/ is a plain package, not an installed app, so autodiscovery would not find it.
# tasks.instrumentation holds no task: it connects the log context and metrics signals.
# tasks.database comes first: its task_prerun handler waits out a database outage before the
# other handlers (and the task) query the database.
CELERY_IMPORTS = [
    "tasks.database",
    "tasks.staging",
    "tasks.maintenance",
    "tasks.instrumentation",
]
# Keep worker connections between tasks; tasks.database recycles them as Django does per request.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
# TaskResult rows are deleted by retention with their jobs (purge-old-jobs), not after
# Celery's default of one day, so a failed sub-job's traceback lives as long as its job.
CELERY_RESULT_EXPIRES = None
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "reap-expired-leases": {
        "task": "tasks.maintenance.reap_expired_leases",
        "schedule": env.int("REAPER_INTERVAL_SECONDS", default=30),
    },
    "reconcile-lost-subjobs": {
        "task": "tasks.maintenance.reconcile_lost_subjobs",
        "schedule": env.int("RECONCILER_INTERVAL_SECONDS", default=60),
    },
    "sweep-unpinned-copies": {
        "task": "tasks.maintenance.sweep_unpinned_copies",
        "schedule": env.int("SWEEPER_INTERVAL_SECONDS", default=300),
    },
    "purge-old-jobs": {
        "task": "tasks.maintenance.purge_old_jobs",
        "schedule": env.int("RETENTION_INTERVAL_SECONDS", default=3600),
    },
}

# --- Staging --------------------------------------------------------------------------------

ARCHIVE_ROOT = Path(env("ARCHIVE_ROOT", default=str(VAR_DIR / "archive")))
STAGING_ROOT = Path(env("STAGING_ROOT", default=str(VAR_DIR / "staging")))
# Results too large for a database row (a scan's list of files) are written here, one file per
# job, and deleted with their job. Every web and worker process must see the same directory.
RESULTS_ROOT = Path(env("RESULTS_ROOT", default=str(VAR_DIR / "results")))
STAGING = {
    # A request may name at most this many files.
    "MAX_FILES_PER_REQUEST": env.int("STAGING_MAX_FILES_PER_REQUEST", default=10_000),
    # A sub-job (one Celery task) takes at most this many files or bytes.
    "SUBJOB_MAX_FILES": env.int("STAGING_SUBJOB_MAX_FILES", default=50),
    "SUBJOB_MAX_BYTES": env.int("STAGING_SUBJOB_MAX_BYTES", default=2 * 1024**3),
    # A running sub-job's lease; its heartbeat renews it, the reaper takes back expired ones.
    "LEASE_SECONDS": env.int("STAGING_LEASE_SECONDS", default=120),
    "MAX_ATTEMPTS": env.int("STAGING_MAX_ATTEMPTS", default=3),
    # A sub-job queued this long without a worker taking it is published again.
    "REDISPATCH_AFTER_SECONDS": env.int("STAGING_REDISPATCH_AFTER_SECONDS", default=300),
    # Progress is written at most this often per sub-job.
    "PROGRESS_INTERVAL_SECONDS": env.float("STAGING_PROGRESS_INTERVAL_SECONDS", default=1.0),
    "COPY_CHUNK_BYTES": env.int("STAGING_COPY_CHUNK_BYTES", default=8 * 1024**2),
    # Retry-After of the asynchronous API calls: how long a client should wait between polls.
    "POLL_INTERVAL_SECONDS": env.int("STAGING_POLL_INTERVAL_SECONDS", default=5),
    # How long staged copies stay pinned when a request does not say (the DTS needs 7 days).
    "DEFAULT_LIFETIME": timedelta(days=env.int("STAGING_DEFAULT_LIFETIME_DAYS", default=14)),
    # Finished jobs (with their items, sub-jobs, results and TaskResult rows) are deleted this
    # long after they ended; well above the 7 days the DTS may come back for a request.
    "RETENTION": timedelta(days=env.int("STAGING_RETENTION_DAYS", default=30)),
    # Jobs deleted per transaction by the purge.
    "RETENTION_BATCH": env.int("STAGING_RETENTION_BATCH", default=200),
}

# --- Metrics --------------------------------------------------------------------------------

# With a token, GET /metrics needs "Authorization: Bearer <token>"; without, it is open.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
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
    # A diskLifetime longer than this is shortened to it (the lifetime is the client's wish).
    "MAX_DISK_LIFETIME": timedelta(days=env.int("TAPE_MAX_DISK_LIFETIME_DAYS", default=30)),
}

# --- Logging --------------------------------------------------------------------------------

# LOG_FORMAT=json writes one JSON object per line; lines written during a task carry job_id,
# subjob_id, task_id and worker_host (stagingsvc.logconfig, tasks.instrumentation).
LOG_FORMAT = env("LOG_FORMAT", default="plain")
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOGGING = logging_config(fmt=LOG_FORMAT, level=LOG_LEVEL)
