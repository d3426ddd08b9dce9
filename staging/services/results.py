"""Writes of job results kept outside the database: the results file a task leaves, and its
removal with the job, however the job is deleted (retention, the admin, ``job_delete``)."""

import logging

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from staging.errors import ConflictError
from staging.models import ACTIVE_STATUSES, Job, Pin
from staging.results import results_file_delete

logger = logging.getLogger(__name__)


def job_result_file_set(*, job_id: int, name: str) -> None:
    """Point the job at its finished results file (written under the file's final name)."""
    Job.objects.filter(pk=job_id).update(result_file=name)


@transaction.atomic
def job_delete(*, job: Job) -> None:
    """Delete a job that has ended and holds no staged copy, with everything recorded about it
    (its results file goes once the deletion commits). A job still at work, or whose pins the
    sweeper has yet to clear, is a conflict: deleting its pins would leave its copies on disk
    with nothing to find them by."""
    status = Job.objects.filter(pk=job.pk).values_list("status", flat=True).first()
    if status in ACTIVE_STATUSES:
        raise ConflictError(f"job {job.uuid} is {status}; cancel it before deleting it")
    if Pin.objects.filter(job=job).exists():
        raise ConflictError(
            f"job {job.uuid} still pins staged copies; release them and let the sweeper remove "
            "them before deleting the job"
        )
    job.delete()


@receiver(post_delete, sender=Job, dispatch_uid="staging.results.job_deleted")
def _remove_results_file_of_deleted_job(sender, instance: Job, **kwargs) -> None:
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
