"""A job's results kept outside the database, as the job records them: the results file a task
wrote (the file itself: staging.result_files; its removal with the job: staging.signals)."""

from staging.models import Job


def job_result_file_set(*, job_id: int, name: str) -> None:
    """Point the job at its finished results file (written under the file's final name)."""
    Job.objects.filter(pk=job_id).update(result_file=name)
