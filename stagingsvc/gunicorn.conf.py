"""gunicorn settings; HOST/PORT/WEB_CONCURRENCY from the environment."""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
# A status poll must never wait behind a slow client.
timeout = 60
graceful_timeout = 20
accesslog = "-"
# Several instances may share a host (tests, benchmarks); nothing here uses the control socket.
control_socket_disable = True


def on_starting(server):
    """Metrics of a previous run must not add to this one's (prometheus multiprocess mode)."""
    from staging.metrics import multiprocess_dir_reset

    multiprocess_dir_reset()


def child_exit(server, worker):
    from staging.metrics import process_exited

    process_exited(worker.pid)
