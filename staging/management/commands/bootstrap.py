import os

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from staging.errors import ServiceError
from staging.services.catalogue import store_ensure_primary

# The variables that, when set, decide the primary store's roots on every start. Read from the
# environment rather than from settings: the settings hold a default under var/ as well, and a
# default must not move a store that ``addstore --primary`` placed elsewhere.
ROOT_VARIABLES = {"archive_root": "ARCHIVE_ROOT", "staging_root": "STAGING_ROOT"}


class Command(BaseCommand):
    help = (
        "Prepare the install on every start: migrate, collect static files, and make the primary "
        "store's roots those of ARCHIVE_ROOT and STAGING_ROOT when they are set."
    )

    def handle(self, *args, **options):
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        configured = {
            name: os.environ[variable]
            for name, variable in ROOT_VARIABLES.items()
            if os.environ.get(variable)
        }
        try:
            primary = store_ensure_primary(**configured)
        except ServiceError as exc:
            set_here = ", ".join(f"{ROOT_VARIABLES[n]}={v}" for n, v in configured.items())
            raise CommandError(
                f"cannot start: {exc.detail}. Fix ARCHIVE_ROOT and STAGING_ROOT "
                f"({set_here or 'not set: the defaults under var/'}) and run again."
            ) from exc
        store, previous = primary.store, primary.previous_roots
        port = settings.SERVICE_PORT
        base = f"http://127.0.0.1:{port}"
        self.stdout.write(
            f"""
stagingsvc is starting.
  Start here   {base}/
  API          {base}/dts/staging   {base}/api/v1/jobs/
  API docs     {base}/api/docs/   (schema: /api/schema/)
  Tasks        {base}/durastore/task  {base}/api/v1/tasks/
  Admin        {base}/admin/   (first: .venv/bin/python manage.py createsuperuser)
  Dashboard    {base}/admin/dashboard/
  Health       {base}/healthz  {base}/readyz
  Store        {store.slug}: archive {store.archive_root}{_was(previous, "archive_root")}
                         staging {store.staging_root}{_was(previous, "staging_root")}
  A token      .venv/bin/python manage.py createtoken alice --role data-user
  Files        put them in the archive, then: .venv/bin/python manage.py scan
"""
        )


def _was(previous: dict[str, str], name: str) -> str:
    return f"   (moved: was {previous[name]})" if name in previous else ""
