"""The Celery application; every setting comes from Django settings with the CELERY_ prefix."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stagingsvc.settings.base")

app = Celery("stagingsvc")
app.config_from_object("django.conf:settings", namespace="CELERY")
