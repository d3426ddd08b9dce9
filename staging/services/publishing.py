"""Handing sub-jobs to the broker: one ``run_subjob`` message per sub-job, on the queue its
task goes to. The dispatcher publishes what capacity allows (staging.services.dispatch); a
worker handing a sub-job back and the reconciler publish it again (staging.services.execution,
staging.services.recovery)."""

import logging
import uuid
from collections.abc import Iterable

from celery import current_app
from django.db import connection
from django.db.models import BooleanField, Case, ExpressionWrapper, Q, Value, When
from django.utils import timezone

from staging.models import JobStatus, SubJob
from staging.selectors_dispatch import UNCAPPED_TASKS

logger = logging.getLogger(__name__)

RUN_SUBJOB_TASK = "tasks.staging.run_subjob"
# The same task's name before it was renamed: messages a broker held during the upgrade carry it,
# so workers still serve it and queue counts include it (tasks.staging).
RUN_SUBJOB_TASK_OLD_NAME = "tasks.staging.stage_subjob"
SUBJOB_TASK_NAMES = frozenset({RUN_SUBJOB_TASK, RUN_SUBJOB_TASK_OLD_NAME})
STAGING_QUEUE = "staging"
# Release sub-jobs free space and must never wait behind staging work: they travel on the
# control queue, which a worker process of its own consumes (Procfile's `control`).
CONTROL_QUEUE = "control"
PUBLISH_BATCH = 500
# The message header naming the sub-job's job (its uuid); a message without it (published by
# an older release) is answered by a query.
JOB_HEADER = "stagingsvc_job"


def subjobs_publish(*, subjob_ids: Iterable[int]) -> int:
    """Hand NOT_STARTED sub-jobs to the broker, each under a fresh Celery task id.

    The task ids are recorded first (one statement per batch: a big job has thousands of
    sub-jobs), then the batch's messages go to the broker together (one round trip on Redis).
    A failure to publish is logged, not raised: the sub-jobs stay NOT_STARTED in the database
    and the reconciler publishes them again (a duplicate delivery is harmless: the lease)."""
    published = 0
    subjob_ids = list(subjob_ids)
    for start in range(0, len(subjob_ids), PUBLISH_BATCH):
        recorded = _task_ids_record(subjob_ids[start : start + PUBLISH_BATCH])
        if not recorded:
            continue
        try:
            _messages_send(recorded)
        except Exception:
            logger.exception(
                "could not publish %s sub-jobs (from %s); the reconciler will retry",
                len(recorded),
                min(recorded),
            )
            continue
        published += len(recorded)
    return published


def _task_ids_record(subjob_ids: list[int]) -> dict[int, str]:
    """Give each still-queued sub-job of ``subjob_ids`` a fresh task id and the dispatch
    time; returns the ids of those it changed, with their task ids."""
    task_ids = {pk: str(uuid.uuid4()) for pk in subjob_ids}
    now = timezone.now()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {SubJob._meta.db_table} AS s "
                "SET celery_task_id = v.task_id, dispatched_at = %s "
                "FROM unnest(%s::bigint[], %s::varchar[]) AS v(id, task_id) "
                "WHERE s.id = v.id AND s.status = %s RETURNING s.id, s.celery_task_id",
                [now, list(task_ids), list(task_ids.values()), JobStatus.NOT_STARTED],
            )
            return dict(cursor.fetchall())
    SubJob.objects.filter(pk__in=task_ids, status=JobStatus.NOT_STARTED).update(
        celery_task_id=Case(*(When(pk=pk, then=Value(t)) for pk, t in task_ids.items())),
        dispatched_at=now,
    )
    recorded = SubJob.objects.filter(
        pk__in=task_ids, status=JobStatus.NOT_STARTED, celery_task_id__in=task_ids.values()
    ).values_list("pk", flat=True)
    return {pk: task_ids[pk] for pk in recorded}


def subjob_message_send(*, subjob_id: int, task_id: str, job_uuid) -> bool:
    """Publish the ``run_subjob`` message of a staging sub-job of job ``job_uuid``, already
    recorded as dispatched under ``task_id`` (by its submission: staging.services.dispatch),
    on the staging queue. A failure is logged, not raised: the reconciler publishes it again."""
    try:
        _messages_publish(
            {subjob_id: task_id}, jobs={subjob_id: job_uuid}, on_control=set(), cartridges=set()
        )
    except Exception:
        logger.exception("could not publish sub-job %s; the reconciler will retry", subjob_id)
        return False
    return True


def _messages_send(task_ids: dict[int, str]) -> None:
    """Publish one run_subjob message per sub-job: release sub-jobs on the control queue, the
    others on the staging queue. A tape library's cartridge sub-job says so in its message, so
    the worker needs no query to tell (staging.services.cartridges)."""
    kinds = SubJob.objects.filter(pk__in=list(task_ids)).values_list(
        "pk",
        "job__uuid",
        ExpressionWrapper(Q(job__task__in=UNCAPPED_TASKS), output_field=BooleanField()),
        ExpressionWrapper(
            ~Q(tape_vid="") & Q(job__store__tape_library__isnull=False),
            output_field=BooleanField(),
        ),
    )
    jobs = {pk: job_uuid for pk, job_uuid, _, _ in kinds}
    on_control = {pk for pk, _, control, _ in kinds if control}
    cartridges = {pk for pk, _, _, cartridge in kinds if cartridge}
    _messages_publish(task_ids, jobs=jobs, on_control=on_control, cartridges=cartridges)


def _messages_publish(
    task_ids: dict[int, str], *, jobs: dict, on_control: set[int], cartridges: set[int]
) -> None:
    """Through one producer, buffered by kombu's publish batch (a Redis pipeline: one round
    trip per PUBLISH_BATCH messages, task-sent events included); transports without batches
    publish one by one. Each message names its sub-job's job in a header (JOB_HEADER), for
    the worker's log context (tasks.instrumentation)."""
    queues = current_app.amqp.queues
    with current_app.producer_or_acquire() as producer, producer.batch(max_size=PUBLISH_BATCH * 4):
        for subjob_id, task_id in task_ids.items():
            queue = queues[CONTROL_QUEUE if subjob_id in on_control else STAGING_QUEUE]
            # Declaring the queue keeps messages from being dropped as undeliverable when the
            # broker lost its bindings (a flush); kombu declares it once per connection.
            current_app.send_task(
                RUN_SUBJOB_TASK,
                args=[subjob_id],
                kwargs={"cartridge": True} if subjob_id in cartridges else {},
                task_id=task_id,
                queue=queue,
                declare=[queue],
                producer=producer,
                headers={JOB_HEADER: str(jobs[subjob_id])} if subjob_id in jobs else None,
            )
