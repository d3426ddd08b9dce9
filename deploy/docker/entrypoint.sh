#!/bin/sh
# The image's entry point: `web`, `worker`, `control`, `webhooks`, `beat`, `flower` or `migrate` run that
# process (exec'd, so it receives the container's SIGTERM itself); anything else is run as
# given, e.g. `python manage.py createtoken alice --role data-user`.
set -eu

# Prometheus multiprocess mode: each process group starts from an empty directory, or the
# counters of a previous run of this container would be added to the new one's.
metrics_dir() {
    export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-/tmp/prometheus}"
    rm -rf "$PROMETHEUS_MULTIPROC_DIR"
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
}

case "${1:-web}" in
    web)
        shift || true
        metrics_dir
        exec gunicorn -c stagingsvc/gunicorn.conf.py stagingsvc.wsgi "$@"
        ;;
    worker)
        shift
        metrics_dir
        exec celery -A stagingsvc worker -Q staging --loglevel INFO \
            --concurrency "${WORKER_CONCURRENCY:-2}" "$@"
        ;;
    control)
        # The control queue (dispatch passes, releases, maintenance) in processes of its own,
        # so none of it waits while every staging process copies.
        shift
        metrics_dir
        exec celery -A stagingsvc worker -Q control --loglevel INFO \
            --concurrency "${CONTROL_CONCURRENCY:-2}" --hostname "control@%h" "$@"
        ;;
    webhooks)
        # Webhook sends wait on receivers' networks: threads (I/O bound), and a queue of their
        # own so a slow receiver never holds up the control queue.
        shift
        metrics_dir
        exec celery -A stagingsvc worker -Q webhooks --pool threads --loglevel INFO \
            --concurrency "${WEBHOOK_CONCURRENCY:-8}" --hostname "webhooks@%h" "$@"
        ;;
    beat)
        shift
        exec celery -A stagingsvc beat --loglevel INFO "$@"
        ;;
    flower)
        shift
        # Loopback unless FLOWER_ADDRESS says otherwise (compose publishes it on the host's
        # loopback only); Flower shows every task's arguments.
        exec celery -A stagingsvc flower --address="${FLOWER_ADDRESS:-127.0.0.1}" \
            --port="${FLOWER_PORT:-5555}" "$@"
        ;;
    migrate)
        shift
        exec python manage.py bootstrap "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
