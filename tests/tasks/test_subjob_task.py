"""The Celery task that runs a sub-job, under its name and under the name it had before."""

from pathlib import Path

import pytest

from staging.models import Job, JobStatus
from tasks.staging import run_subjob, stage_subjob

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("task", [run_subjob, stage_subjob], ids=["run_subjob", "stage_subjob"])
def test_either_name_runs_the_subjob(task, client_for, store, archive_files):
    # stage_subjob is the name messages published before the rename carry.
    (file,) = archive_files({"a.txt": b"alpha"})
    response = client_for().post("/dts/staging", {"ids": [file.id]}, format="json")
    job = Job.objects.get(uuid=response.json()["request_id"])
    (subjob,) = job.subjobs.all()

    answer = task.apply(args=[subjob.pk]).get()

    job.refresh_from_db()
    assert answer["subjob"] == subjob.pk and answer["status"] == JobStatus.FINISHED
    assert job.status == JobStatus.FINISHED
    assert (Path(store.staging_root) / "a.txt").read_bytes() == b"alpha"
