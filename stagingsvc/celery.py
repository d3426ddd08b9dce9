"""The Celery application; every setting comes from Django settings with the CELERY_ prefix."""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stagingsvc.settings.base")

app = Celery("stagingsvc")
app.config_from_object("django.conf:settings", namespace="CELERY")


@signals.setup_logging.connect
def logging_from_django_settings(**kwargs) -> None:
    """Workers and beat log exactly as the web does (settings.LOGGING: plain or JSON lines with
    the task context) instead of Celery replacing the root logger's handlers with its own."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)
