"""The pool processes of a worker that takes staging work run at a lower CPU and I/O priority
(settings.STAGING["WORKER_NICE"] and ["WORKER_IONICE"]) than the web on the same machine: a
status poll then waits for no copy, and a copy loses only the moments a request needs. A worker
that takes only the control queue (dispatch passes, releases, maintenance) keeps the normal
priority: its passes decide how soon a freed slot is used. Listed in CELERY_IMPORTS."""

import logging

from celery import signals
from django.conf import settings

from stagingsvc.process_priority import lower_own_priority, parse_ionice

logger = logging.getLogger(__name__)

STAGING_QUEUE = settings.CELERY_TASK_ROUTES["tasks.staging.*"]["queue"]


@signals.worker_process_init.connect
def staging_process_priority_lower(sender=None, **kwargs) -> None:
    from celery import current_app

    consumed = current_app.amqp.queues.consume_from or {}
    if STAGING_QUEUE not in consumed:
        return
    nice = settings.STAGING["WORKER_NICE"]
    io = parse_ionice(settings.STAGING["WORKER_IONICE"])
    for problem in lower_own_priority(nice, io):
        logger.warning("staging worker process: %s", problem)
