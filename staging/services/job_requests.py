"""Client requests on jobs that take more than one engine call: submitting a job (choose the task,
resolve what it works on, make a repeated Idempotency-Key return the job it created the first
time) and releasing a job's staged copies, all or by path."""

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction

from staging.errors import IdempotencyKeyReusedError, ServiceError
from staging.models import Job, Store
from staging.selectors import files_by_ids, job_by_idempotency_key, job_paths_not_in
from staging.services.catalogue import catalogue_upsert_paths
from staging.services.jobs import job_create_staging
from staging.services.recovery import job_release


@dataclass(frozen=True)
class JobRequest:
    """What a client asked for, validated for shape (not yet against the store)."""

    task: str
    store: Store
    ids: Sequence[str] = ()
    paths: Sequence[str] = ()
    parameters: dict | None = None
    lifetime: timedelta | None = None


def request_fingerprint(body) -> str:
    """A hash of the parsed request body: equal for the same JSON however it was spaced."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _stage(*, owner, request: JobRequest, idempotency_key: str) -> Job:
    if request.parameters:
        raise ServiceError(
            f"stage takes no parameters; got {', '.join(sorted(request.parameters))}",
            field="parameters",
        )
    if request.ids:
        found = files_by_ids(ids=request.ids)
        unknown = [
            i
            for i in dict.fromkeys(request.ids)
            if i not in found or found[i].store_id != request.store.pk
        ]
        if unknown:
            raise ServiceError(
                f"{len(unknown)} of {len(request.ids)} ids are not files of store "
                f"{request.store.slug}: {', '.join(unknown[:20])}",
                field="ids",
                extra={"unknown_ids": unknown},
            )
        files = [found[i] for i in dict.fromkeys(request.ids)]
    else:
        files = catalogue_upsert_paths(store=request.store, paths=request.paths)
    return job_create_staging(
        owner=owner,
        store=request.store,
        files=files,
        source="api",
        lifetime=request.lifetime,
        idempotency_key=idempotency_key,
        task=request.task,
    )


# The tasks a job can run, by name. The task catalogue will register its tasks here.
JOB_CREATORS: dict[str, Callable[..., Job]] = {"stage": _stage}


def _max_files() -> int:
    return settings.STAGING["MAX_FILES_PER_REQUEST"]


@transaction.atomic
def job_submit(
    *, owner, request: JobRequest, idempotency_key: str = "", fingerprint: str = ""
) -> tuple[Job, bool]:
    """Create the job ``request`` describes; returns it and whether it is new.

    With an ``idempotency_key`` the owner already used, the job of that first request comes back
    (nothing is created) if ``fingerprint`` matches it, and a different body is refused (422)."""
    if idempotency_key:
        earlier = job_by_idempotency_key(owner=owner, key=idempotency_key)
        if earlier is not None:
            return _replayed(earlier, idempotency_key, fingerprint), False
    create = JOB_CREATORS.get(request.task)
    if create is None:
        raise ServiceError(f"{request.task} is not a supported task.", field="task")
    if len(request.ids) + len(request.paths) > _max_files():
        raise ServiceError(f"At most {_max_files()} files per request", field="ids")
    try:
        with transaction.atomic():
            job = create(owner=owner, request=request, idempotency_key=idempotency_key)
            Job.objects.filter(pk=job.pk).update(request_hash=fingerprint)
    except IntegrityError:
        # The same key won a race in a concurrent request: answer with its job.
        earlier = job_by_idempotency_key(owner=owner, key=idempotency_key)
        if not idempotency_key or earlier is None:
            raise
        return _replayed(earlier, idempotency_key, fingerprint), False
    job.request_hash = fingerprint
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
