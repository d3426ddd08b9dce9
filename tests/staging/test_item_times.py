"""Every item a worker took records when it started, however fast it ended (run in this
process with the calls a worker makes; the integration tier runs real workers)."""

from pathlib import Path

import pytest

from staging.catalogue import item_work_for
from staging.models import JobStatus
from staging.services.execution import subjob_run
from staging.services.tasks import task_perform
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def run(store, paths=None, ids=None):
    parameters = {"paths": paths} if paths is not None else {"ids": ids}
    job = task_perform(
        owner=UserFactory(), store=store, task_name="stage", source="api", parameters=parameters
    )
    for subjob in job.subjobs.all():
        subjob_run(subjob_id=subjob.pk, worker="node@host:1", task_id="t", work_for=item_work_for)
    return job


def test_items_finished_between_two_progress_reports_have_a_start_time(store, archive_files):
    archive_files({f"f{n}.txt": b"x" * n for n in range(1, 6)})
    job = run(store, [f"f{n}.txt" for n in range(1, 6)])
    items = list(job.items.all())
    assert {item.status for item in items} == {JobStatus.FINISHED}
    for item in items:
        assert item.started_at is not None, item.path
        assert item.started_at <= item.finished_at


def test_a_failed_item_has_a_start_time_too(store, archive_files):
    (entry,) = archive_files({"gone.txt": b"soon gone"})
    (Path(store.archive_root) / "gone.txt").unlink()  # after the scan: the copy fails
    job = run(store, ids=[entry.id])
    (item,) = job.items.all()
    assert item.status == JobStatus.FAILED
    assert item.started_at is not None
