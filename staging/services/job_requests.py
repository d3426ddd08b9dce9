"""Client requests on jobs that take more than one engine call: submitting a job (choose the task,
resolve what it works on, make a repeated Idempotency-Key return the job it created the first
time), cancelling one for someone (recording who), and releasing a job's staged copies, all or
by path."""

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from staging.catalogue import UnsupportedTaskError
from staging.catalogue.parameters import lifetime_text
from staging.errors import IdempotencyKeyReusedError, ServiceError
from staging.models import DEFAULT_PRIORITY, Job, JobStatus, Store
from staging.selectors import job_by_idempotency_key, job_paths_not_in
from staging.services.deadlines import deadline_columns
from staging.services.jobs import (
    job_cancel,
)
from staging.services.releases import job_release
from staging.services.staging_jobs import staging_job_create, staging_rows_of_names
from staging.services.tasks import task_perform
from staging.services.webhooks import job_callback_check, job_callback_create


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
    deadline: timedelta | None = None  # else the store's default (staging jobs)

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
    *,
    owner,
    request: JobRequest,
    idempotency_key: str = "",
    fingerprint: str = "",
    callback_url: str = "",
    api_base: str = "",
) -> tuple[Job, bool]:
    """Create the job ``request`` describes, through the task catalogue as every dialect does;
    returns it and whether it is new.

    With an ``idempotency_key`` the owner already used, the job of that first request comes back
    (nothing is created) if ``fingerprint`` matches it, and a different body is refused (422).

    With a ``callback_url`` the job gets its one-off webhook (its secret on ``job.callback``),
    in the same transaction, so not even its start can pass unannounced."""
    if idempotency_key:
        earlier = job_by_idempotency_key(owner=owner, key=idempotency_key)
        if earlier is not None:
            return _replayed(earlier, idempotency_key, fingerprint), False
    parameters = request.task_parameters()
    if callback_url:
        job_callback_check(callback_url)
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
                request_hash=fingerprint,
                idempotency_key=idempotency_key,
                priority=request.priority,
                **deadline_columns(job, request.deadline),
            )
            if callback_url:
                job_callback_create(job=job, url=callback_url, api_base=api_base)
    except IntegrityError:
        # The same key won a race in a concurrent request: answer with its job.
        earlier = job_by_idempotency_key(owner=owner, key=idempotency_key)
        if not idempotency_key or earlier is None:
            raise
        return _replayed(earlier, idempotency_key, fingerprint), False
    job.request_hash, job.idempotency_key = fingerprint, idempotency_key
    job.priority = request.priority
    job.deadline_at = deadline_columns(job, request.deadline).get("deadline_at", job.deadline_at)
    return job, True


NAME_MAX_LENGTH = {"ids": 64, "paths": 1024}


@dataclass(frozen=True)
class StreamedJobRequest:
    """A staging request whose files come as a stream of names (an NDJSON body, or a bare JSON
    array): ids or paths of ``store``, each named in errors by ``where`` (``line 3``)."""

    store: Store
    by: str  # "ids" or "paths"
    entries: Iterable[tuple[str, object]]
    lifetime: timedelta | None = None
    verify: bool = False
    priority: int = DEFAULT_PRIORITY
    deadline: timedelta | None = None


def job_submit_streamed(
    *, owner, request: StreamedJobRequest, idempotency_key: str = "", described: str = ""
) -> tuple[Job, bool]:
    """``job_submit`` of a staging job for a stream of file names, however many (up to
    ``STAGING["MAX_FILES_PER_REQUEST"]``): each name is checked as it comes and a bad one
    refused naming its place, the names read into the database and resolved against the
    catalogue by ``staging_rows_of_names`` (a repeat is dropped, as in a JSON body), the job
    written by ``staging_job_create``. Nothing is written unless every name is good. The
    fingerprint that guards an Idempotency-Key covers ``described`` (the request's other
    parameters) and the names in order."""
    fingerprint = hashlib.sha256(described.encode())
    names = _names_checked(request.entries, by=request.by, fingerprint=fingerprint)

    def earlier() -> Job | None:
        job = job_by_idempotency_key(owner=owner, key=idempotency_key) if idempotency_key else None
        return _replayed(job, idempotency_key, fingerprint.hexdigest()) if job else None

    parameters: dict = {"verify": request.verify}
    if request.lifetime is not None:
        parameters["lifetime"] = lifetime_text(request.lifetime)
    try:
        with transaction.atomic():
            rows = staging_rows_of_names(request.store, names, by=request.by)
            replayed = earlier() if rows.files_total else None
            if replayed is not None:
                return replayed, False
            job = staging_job_create(
                owner=owner,
                store=request.store,
                rows=rows,
                source="api",
                lifetime=request.lifetime,
                parameters=parameters,
                idempotency_key=idempotency_key,
            )
            job.request_hash, job.priority = fingerprint.hexdigest(), request.priority
            deadline = deadline_columns(job, request.deadline)
            # Before the commit that wakes the dispatcher: its first pass sees the priority.
            Job.objects.filter(pk=job.pk).update(
                request_hash=job.request_hash, priority=job.priority, **deadline
            )
            job.deadline_at = deadline.get("deadline_at", job.deadline_at)
    except IntegrityError:
        # The same key won a race in a concurrent request: answer with its job.
        replayed = earlier() if idempotency_key else None
        if replayed is None:
            raise
        return replayed, False
    return job, True


def _names_checked(entries, *, by: str, fingerprint) -> Iterator[tuple[str, str]]:
    """The names of ``entries``, each a non-empty JSON string short enough for its kind and
    free of NUL, at most ``MAX_FILES_PER_REQUEST`` of them; the first bad one is a 400 naming
    where it is."""
    longest = NAME_MAX_LENGTH[by]
    limit = settings.STAGING["MAX_FILES_PER_REQUEST"]
    for count, (where, value) in enumerate(entries, start=1):
        if not isinstance(value, str) or not value:
            raise ServiceError(
                f"{where}: expected a non-empty JSON string (a file's {by[:-1]}), got "
                f"{json.dumps(value)[:80]}",
                field=by,
            )
        if len(value) > longest:
            raise ServiceError(f"{where}: longer than {longest} characters", field=by)
        if "\x00" in value:
            raise ServiceError(f"{where}: contains a NUL character (\\u0000)", field=by)
        if count > limit:
            raise ServiceError(f"At most {limit} {by} per request; {where} is one more", field=by)
        fingerprint.update(value.encode() + b"\n")
        yield where, value


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
