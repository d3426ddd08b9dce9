"""Performing a catalogue task: look the task up for the store, read its parameters, create
its job. Both task APIs (DuraStore and API v1) come through here."""

from django.db import transaction

from staging.catalogue import TaskRequest, task_type_for
from staging.models import Job, Store


@transaction.atomic
def task_perform(
    *,
    owner,
    store: Store,
    task_name: str,
    source: str,
    parameters=None,
    text: str | None = None,
) -> Job:
    """Create the job that performs ``task_name`` on ``store``, its parameters given either as
    a parsed JSON body (``parameters``) or as a raw text body (``text``, the DuraStore way).
    An unknown task, or one the store's kind does not support, is UnsupportedTaskError; bad
    parameters are a ServiceError saying what is wrong, and nothing is created."""
    task = task_type_for(task_name, store)
    if text is not None:
        validated = task.parse_text(text, store=store, owner=owner)
    else:
        validated = task.parse(parameters, store=store, owner=owner)
    return task.create(TaskRequest(owner=owner, store=store, parameters=validated, source=source))


def task_response_text(job: Job) -> str:
    """The DuraStore answer to a performed task: the task's own text."""
    task = task_type_for(job.task, job.store)
    return task.response_text(job)
