"""The baseline of the pipeline benchmark: a Celery task that does nothing, so what is measured
is the broker, the worker and the django-db result backend alone."""

from celery import shared_task

NOOP_TASK = "bench.noop"


@shared_task(name=NOOP_TASK)
def noop() -> None:
    return None
