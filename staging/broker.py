"""What the broker holds, read the same way by the reconciler, the metrics and the admin."""

from celery import current_app


def broker_queue_lengths(queues: tuple[str, ...]) -> dict[str, int]:
    """Messages waiting in each queue (every priority level).

    A passive declare is no use on Redis: an empty queue is a missing list ("no such queue"),
    and kombu's existence check ignores a global key prefix. A plain declare creates nothing but
    a binding on Redis and counts the list."""
    with current_app.connection_for_read() as connection:
        connection.ensure_connection(max_retries=1)
        channel = connection.default_channel
        return {queue: channel.queue_declare(queue=queue).message_count for queue in queues}
