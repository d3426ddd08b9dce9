"""Client requests on jobs that take more than one engine call: submitting a job (choose the task,
resolve what it works on, make a repeated Idempotency-Key return the job it created the first
time), cancelling one for someone (recording who), and releasing a job's staged copies, all or
by path."""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.utils import timezone

from staging.errors import IdempotencyKeyReusedError, ServiceError
from staging.models import DEFAULT_PRIORITY, Job, JobStatus, Store
from staging.selectors import job_by_idempotency_key, job_paths_not_in
from staging.services.jobs import job_cancel
from staging.services.recovery import job_release
from staging.services.tasks import task_perform
from tasks.catalogue import UnsupportedTaskError


@dataclass(frozen=True)
class JobRequest:
    """What a client asked ``POST /api/v1/jobs/`` for, checked for shape only: the task and its
    store, plus the task's parameters. ``ids``, ``paths`` and ``lifetime`` are sent beside
    ``parameters`` for the common case (staging files) and are parameters like any other: the
    task's own validation judges them, exactly as ``POST /api/v1/tasks/{task}/`` would."""

    task: str
    store: Store
    parameters: dict = field(default_factory=dict)
    ids: Sequence[str] | None = None
    paths: Sequence[str] | None = None
    lifetime: str | None = None
    priority: int = DEFAULT_PRIORITY

    def task_parameters(self) -> dict:
        beside = {
            name: value
            for name, value in (
                ("ids", self.ids),
                ("paths", self.paths),
                ("lifetime", self.lifetime),
            )
            if value is not None
        }
        twice = sorted(set(beside) & set(self.parameters))
        if twice:
            raise ServiceError(
                f"{', '.join(twice)} given both in the body and in parameters; give each once",
                field=twice[0],
            )
        return {**self.parameters, **beside}


def request_fingerprint(body) -> str:
    """A hash of the parsed request body: equal for the same JSON however it was spaced."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@transaction.atomic
def job_submit(
    *, owner, request: JobRequest, idempotency_key: str = "", fingerprint: str = ""
) -> tuple[Job, bool]:
    """Create the job ``request`` describes, through the task catalogue as every dialect does;
    returns it and whether it is new.

    With an ``idempotency_key`` the owner already used, the job of that first request comes back
    (nothing is created) if ``fingerprint`` matches it, and a different body is refused (422)."""
    if idempotency_key:
        earlier = job_by_idempotency_key(owner=owner, key=idempotency_key)
        if earlier is not None:
            return _replayed(earlier, idempotency_key, fingerprint), False
    parameters = request.task_parameters()
    try:
        with transaction.atomic():
            try:
                job = task_perform(
                    owner=owner,
                    store=request.store,
                    task_name=request.task,
                    source="api",
                    parameters=parameters,
                )
            except UnsupportedTaskError as exc:
                raise ServiceError(exc.detail, field="task") from exc
            # Before the commit that wakes the dispatcher: its first pass sees the priority.
            Job.objects.filter(pk=job.pk).update(
                request_hash=fingerprint, idempotency_key=idempotency_key, priority=request.priority
            )
    except IntegrityError:
        # The same key won a race in a concurrent request: answer with its job.
        earlier = job_by_idempotency_key(owner=owner, key=idempotency_key)
        if not idempotency_key or earlier is None:
            raise
        return _replayed(earlier, idempotency_key, fingerprint), False
    job.request_hash, job.idempotency_key = fingerprint, idempotency_key
    job.priority = request.priority
    return job, True


def _replayed(job: Job, key: str, fingerprint: str) -> Job:
    if job.request_hash != fingerprint:
        raise IdempotencyKeyReusedError(
            f"Idempotency-Key {key!r} was already used for job {job.uuid} with a different "
            "request body; send a new key for a new request",
            field="Idempotency-Key",
            extra={"jobId": str(job.uuid)},
        )
    return job


def job_cancel_requested(*, job: Job, by) -> Job:
    """Cancel ``job`` (``job_cancel``: the same outcome and refusals) for the user ``by``, and
    record who asked and when. Only the cancel that stops an active job is recorded: asking
    again, or after a cancel by other means, keeps the first record."""
    was_active = Job.objects.filter(
        pk=job.pk, status__in=[JobStatus.NOT_STARTED, JobStatus.RUNNING]
    ).exists()
    job = job_cancel(job=job)
    if was_active:
        Job.objects.filter(pk=job.pk, cancelled_at__isnull=True).update(
            cancelled_by=by, cancelled_at=timezone.now()
        )
        job.refresh_from_db(fields=["cancelled_by", "cancelled_at"])
    return job


@transaction.atomic
def job_release_requested(*, job: Job, paths: Sequence[str] | None = None) -> int:
    """Release the job's pins (all, or those of ``paths``); returns how many. A path that is not
    one of the job's files is refused and nothing is released. (Releasing a job that still runs
    is safe: the sweeper keeps its copies until it ends.)"""
    if paths is not None:
        unknown = job_paths_not_in(job=job, paths=paths)
        if unknown:
            raise ServiceError(
                f"{len(unknown)} of {len(paths)} paths are not files of job {job.uuid}: "
                f"{', '.join(unknown[:20])}",
                field="paths",
                extra={"unknown_paths": unknown},
            )
    return job_release(job=job, paths=list(paths) if paths is not None else None)
