"""Retention: old finished jobs go with everything recorded about them, in batches; recent,
active and still-pinned jobs stay."""

import uuid
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_celery_results.models import TaskResult

from staging.models import Item, Job, JobStatus, Pin, SubJob
from staging.services.retention import jobs_purge, jobs_purged
from tests.factories import ItemFactory, JobFactory, SubJobFactory

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def job_with_rows(*, status=JobStatus.FINISHED, ended_days_ago=40, items=3, pinned=False):
    """A job as the engine leaves it: sub-job with a Celery task id and TaskResult, items, and
    (when pinned) a live pin on a staged copy."""
    now = timezone.now()
    ended = now - ended_days_ago * DAY
    job = JobFactory(status=status, finished_at=ended if status != JobStatus.RUNNING else None)
    Job.objects.filter(pk=job.pk).update(created_at=ended - DAY, updated_at=ended)
    task_id = str(uuid.uuid4())
    subjob = SubJobFactory(job=job, status=status, celery_task_id=task_id)
    for _ in range(items):
        ItemFactory(job=job, subjob=subjob, status=status)
    TaskResult.objects.create(task_id=task_id, status="SUCCESS", task_name="stage_subjob")
    TaskResult.objects.filter(task_id=task_id).update(date_done=ended)
    if pinned:
        Pin.objects.create(job=job, store=job.store, path="a.txt", expires_at=now + 30 * DAY)
    return job


def exists(job: Job) -> bool:
    return Job.objects.filter(pk=job.pk).exists()


def test_it_deletes_old_finished_jobs_with_their_items_subjobs_and_task_results():
    old = [job_with_rows(status=s) for s in (JobStatus.FINISHED, JobStatus.FAILED)]
    task_ids = list(SubJob.objects.values_list("celery_task_id", flat=True))

    summary = jobs_purge(older_than=30 * DAY)

    assert (summary.jobs, summary.subjobs, summary.items, summary.task_results) == (2, 2, 6, 2)
    assert not any(exists(job) for job in old)
    assert Item.objects.count() == SubJob.objects.count() == 0
    assert not TaskResult.objects.filter(task_id__in=task_ids).exists()


def test_it_keeps_recent_active_and_pinned_jobs():
    recent = job_with_rows(ended_days_ago=5)
    running = job_with_rows(status=JobStatus.RUNNING, ended_days_ago=90)
    cancelling = job_with_rows(status=JobStatus.CANCELLING, ended_days_ago=90)
    pinned = job_with_rows(ended_days_ago=90, pinned=True)
    gone = job_with_rows(ended_days_ago=90)

    summary = jobs_purge(older_than=30 * DAY)

    assert summary.jobs == 1
    assert not exists(gone)
    for kept in (recent, running, cancelling, pinned):
        assert exists(kept)
        assert Item.objects.filter(job=kept).count() == 3
        assert TaskResult.objects.filter(task_id=kept.subjobs.get().celery_task_id).exists()


def test_it_works_through_many_jobs_in_small_batches():
    jobs = [job_with_rows(items=2) for _ in range(7)]
    summary = jobs_purge(older_than=30 * DAY, batch_size=3)
    assert summary.jobs == 7
    assert not any(exists(job) for job in jobs)


def test_a_dry_run_counts_without_deleting():
    job = job_with_rows()
    summary = jobs_purge(older_than=30 * DAY, dry_run=True)
    assert (summary.jobs, summary.subjobs, summary.items, summary.task_results) == (1, 1, 3, 1)
    assert summary.dry_run
    assert exists(job) and Item.objects.filter(job=job).count() == 3


def test_old_task_results_of_no_remaining_sub_job_go_too():
    kept = job_with_rows(ended_days_ago=1)
    TaskResult.objects.create(task_id="periodic-old", task_name="reap")
    TaskResult.objects.create(task_id="periodic-new", task_name="reap")
    TaskResult.objects.filter(task_id="periodic-old").update(date_done=timezone.now() - 40 * DAY)

    summary = jobs_purge(older_than=30 * DAY)

    assert summary.task_results == 1
    remaining = set(TaskResult.objects.values_list("task_id", flat=True))
    assert remaining == {"periodic-new", kept.subjobs.get().celery_task_id}


def test_receivers_learn_which_jobs_went_so_they_can_delete_their_files(
    django_capture_on_commit_callbacks,
):
    job = job_with_rows()
    heard = []

    def receiver(sender, job_ids, job_uuids, **kwargs):
        heard.append((job_ids, job_uuids))

    jobs_purged.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            jobs_purge(older_than=30 * DAY)
    finally:
        jobs_purged.disconnect(receiver)
    assert heard == [([job.pk], [str(job.uuid)])]


def test_the_default_age_is_well_above_the_dts_seven_days(settings):
    assert settings.STAGING["RETENTION"] >= 30 * DAY
    at_twenty_days = job_with_rows(ended_days_ago=20)
    assert jobs_purge().jobs == 0
    assert exists(at_twenty_days)


def test_purgejobs_deletes_and_reports(capsys):
    old, recent = job_with_rows(ended_days_ago=12), job_with_rows(ended_days_ago=2)
    call_command("purgejobs", "--older-than-days", "10")
    assert (
        "deleted 1 jobs ended more than 10 days ago (1 sub-jobs, 3 items" in capsys.readouterr().out
    )
    assert not exists(old) and exists(recent)


def test_purgejobs_dry_run_changes_nothing(capsys):
    old = job_with_rows(ended_days_ago=40)
    call_command("purgejobs", "--dry-run")
    assert "would delete 1 jobs ended more than 30 days ago" in capsys.readouterr().out
    assert exists(old)


@pytest.mark.parametrize("args", [["--older-than-days", "0"], ["--batch-size", "0"]])
def test_purgejobs_refuses_nonsense_arguments(args):
    job = job_with_rows()
    with pytest.raises(CommandError):
        call_command("purgejobs", *args)
    assert exists(job)


def test_a_job_deleted_through_the_orm_takes_its_items_and_pins_with_it():
    # Neither row keeps a database constraint on its job: the ORM's cascade is what removes them.
    deleted = job_with_rows(pinned=True)
    kept = job_with_rows(pinned=True)

    deleted.delete()

    assert not Item.objects.filter(job_id=deleted.pk).exists()
    assert not Pin.objects.filter(job_id=deleted.pk).exists()
    assert Item.objects.filter(job=kept).count() == 3
    assert Pin.objects.filter(job=kept).count() == 1
