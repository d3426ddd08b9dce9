"""What the broker holds, read the same way by the reconciler, the metrics and the admin."""

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
