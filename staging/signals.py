"""Receivers of model signals that act outside the database: on a file, or on a process's
memory. Each is connected in ``StagingConfig.ready()`` (staging/apps.py), so every receiver of
the app is listed there."""

import logging

from django.db import transaction

from staging.models import Job
from staging.result_files import results_file_delete
from staging.token_cache import token_cache

logger = logging.getLogger(__name__)


def results_file_of_deleted_job_remove(sender, instance: Job, **kwargs) -> None:
    """A job's results file lives outside the database, so no cascade removes it: without this
    receiver every way of deleting a job (retention's purge, the admin, ``job_delete``, a
    queryset ``delete()``) would leave the file behind for good."""
    name = instance.result_file
    if not name:
        return

    def remove() -> None:
        try:
            results_file_delete(name)
        except OSError as exc:
            logger.warning("cannot remove results file %s of job %s: %s", name, instance.uuid, exc)

    # After the commit: a deletion rolled back must not lose the results.
    transaction.on_commit(remove, robust=True)


# The token memory (staging.token_cache) would honour a revoked token, a deactivated user or a
# lost role for up to AUTH_CACHE_SECONDS; a change made through this process is forgotten at once.


def revoked_token_forget(sender, instance, **kwargs) -> None:
    token_cache.forget(instance.digest)


def tokens_forget_all(sender, **kwargs) -> None:
    """On a user saved (it may be deactivated or lose superuser status) or its roles changed:
    entries are not indexed by user, and such changes are rare next to polls."""
    token_cache.clear()
