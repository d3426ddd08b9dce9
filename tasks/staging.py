"""Tasks on the ``staging`` queue: the I/O-heavy work."""

import os

from celery import shared_task

from staging.services.execution import subjob_run


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def stage_subjob(self, subjob_id: int) -> dict:
    """Stage one sub-job's files. A duplicate delivery returns without doing anything."""
    worker = f"{self.request.hostname}:{os.getpid()}"
    status = subjob_run(subjob_id=subjob_id, worker=worker, task_id=self.request.id)
    return {"subjob": subjob_id, "status": status, "worker": worker}
