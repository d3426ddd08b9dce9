"""gunicorn settings; HOST/PORT/WEB_CONCURRENCY from the environment."""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# WEB_THREADS threads serve ordinary requests; LIVE_CONNECTIONS more are for requests that wait
# for a job to change (long polls, event streams), which sleep on a condition and hold no
# database connection meanwhile. The settings (LIVE) keep each kind within its share.
threads = int(os.environ.get("WEB_THREADS", "4")) + int(os.environ.get("LIVE_CONNECTIONS", "200"))
# A status poll must never wait behind a slow client.
timeout = 60
graceful_timeout = 20
accesslog = "-"
# With LOG_FORMAT=json gunicorn's own lines (start-up, access log) are JSON too, like Django's.
if os.environ.get("LOG_FORMAT") == "json":
    logconfig_dict = {
        # Each line once: gunicorn's loggers have their own handlers, the root logger too.
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
        },
        "formatters": {
            "generic": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            }
        },
    }
# Several instances may share a host (tests, benchmarks); nothing here uses the control socket.
control_socket_disable = True


# Prometheus multiprocess mode (PROMETHEUS_MULTIPROC_DIR): the master loads none of the
# application, only staging.metrics_multiprocess (the standard library and prometheus_client).
def on_starting(server):
    """Counters of a previous run must not add to this one's."""
    from staging.metrics_multiprocess import multiprocess_dir_reset

    multiprocess_dir_reset()


def child_exit(server, worker):
    from staging.metrics_multiprocess import process_exited

    process_exited(worker.pid)
