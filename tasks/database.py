"""Database connections in worker processes.

Celery's Django fixup closes every connection before and after every task unless
CELERY_DB_REUSE_MAX is set, so each sub-job would pay a new PostgreSQL connection. We set it, and
instead treat each task like a web request: connections past CONN_MAX_AGE, or broken by an error,
are closed, and a reused one is health-checked (CONN_HEALTH_CHECKS) before its first query."""

from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections


@task_prerun.connect
def recycle_connections_before_task(**kwargs):
    close_old_connections()


@task_postrun.connect
def recycle_connections_after_task(**kwargs):
    close_old_connections()
