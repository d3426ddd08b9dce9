"""Database connections in worker processes.

Celery's Django fixup closes every connection before and after every task unless
CELERY_DB_REUSE_MAX is set, so each sub-job would pay a new PostgreSQL connection. We set it, and
instead treat each task like a web request: connections past CONN_MAX_AGE, or broken by an error,
are closed, and a reused one is health-checked (CONN_HEALTH_CHECKS) before its first query.

A task that starts while the database is away waits for it (DATABASE_OUTAGE_WAIT_SECONDS)
before its body runs: a delivery during an outage then runs once the database is back instead
of failing, retrying into the same outage, and leaving its sub-job to the reconciler. These
handlers are connected before any other task_prerun handler (CELERY_IMPORTS lists this module
first), so the others find the database answering."""

from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections

from staging.dependencies import database_wait_until_reachable


@task_prerun.connect
def recycle_connections_before_task(**kwargs):
    close_old_connections()
    database_wait_until_reachable()


@task_postrun.connect
def recycle_connections_after_task(**kwargs):
    close_old_connections()
