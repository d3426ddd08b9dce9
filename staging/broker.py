"""What the broker holds, read the same way by the reconciler, the metrics and the admin."""

import json
from collections.abc import Collection

from celery import current_app


def broker_queue_lengths(queues: tuple[str, ...], *, connection=None) -> dict[str, int]:
    """Messages waiting in each queue (every priority level), over ``connection`` if given
    (the admin's dashboard passes one with short timeouts).

    A passive declare is no use on Redis: an empty queue is a missing list ("no such queue"),
    and kombu's existence check ignores a global key prefix. A plain declare creates nothing but
    a binding on Redis and counts the list."""
    if connection is None:
        with current_app.connection_for_read() as own:
            return broker_queue_lengths(queues, connection=own)
    connection.ensure_connection(max_retries=1)
    channel = connection.default_channel
    return {queue: channel.queue_declare(queue=queue).message_count for queue in queues}


def broker_queue_task_count(queue: str, tasks: Collection[str], *, connection=None) -> int:
    """Messages of any of ``tasks`` (names) waiting in ``queue``, where the queue carries others
    (the control queue: release sub-jobs among beat's passes). On Redis each message's headers
    are read (every priority level); other transports cannot be read without consuming, so
    they answer the queue's whole length, which can only overestimate."""
    if connection is None:
        with current_app.connection_for_read() as own:
            return broker_queue_task_count(queue, tasks, connection=own)
    connection.ensure_connection(max_retries=1)
    if connection.transport.driver_type != "redis":
        return broker_queue_lengths((queue,), connection=connection)[queue]
    channel = connection.default_channel
    count = 0
    with channel.conn_or_acquire() as client:
        for priority in channel.priority_steps:
            for raw in client.lrange(channel._q_for_pri(queue, priority), 0, -1):
                try:
                    count += json.loads(raw)["headers"]["task"] in tasks
                except (ValueError, KeyError, TypeError):
                    continue  # not a task message of ours
    return count
