from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from staging.services.catalogue import store_ensure_primary


class Command(BaseCommand):
    help = "Prepare a fresh install: migrate, collect static files, ensure the primary store."

    def handle(self, *args, **options):
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        store = store_ensure_primary()
        port = settings.SERVICE_PORT
        self.stdout.write(
            f"""
stagingsvc is starting.
  API          http://127.0.0.1:{port}/dts/staging   http://127.0.0.1:{port}/api/v1/jobs/
  API docs     http://127.0.0.1:{port}/api/docs/   (schema: /api/schema/)
  Tasks        http://127.0.0.1:{port}/durastore/task  http://127.0.0.1:{port}/api/v1/tasks/
  Admin        http://127.0.0.1:{port}/admin/   (python manage.py createsuperuser)
  Health       http://127.0.0.1:{port}/healthz  http://127.0.0.1:{port}/readyz
  Store        {store.slug}: archive {store.archive_root}
                         staging {store.staging_root}
  A token      .venv/bin/python manage.py createtoken alice --role data-user
  Files        put them in the archive, then: .venv/bin/python manage.py scan
"""
        )
