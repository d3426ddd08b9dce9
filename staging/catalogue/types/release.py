"""release: unpin staged copies, those of one of the caller's jobs or those of given files. A
copy is deleted by the sweeper once no job pins it any more."""

from rest_framework import serializers

from staging.catalogue.fields import FileListField, StrictStringField
from staging.catalogue.parameters import TaskParameters
from staging.catalogue.registry import TaskRequest, TaskType, register
from staging.errors import ConflictError, NotFoundError, ServiceError
from staging.models import ACTIVE_STATUSES, Item, Job, Pin
from staging.selectors import visible_jobs
from staging.services.execution import ItemFailed, item_result_record
from staging.services.jobs import job_create
from staging.services.releases import job_release, paths_release
from staging.services.staging_jobs import staging_files_resolve
from staging.storage import UnsafePathError, clean_relative_path


class ReleaseParameters(TaskParameters):
    """What to release (one of the three): a job's staged copies, or files' by id or path.
    Files are released from every job the caller may see and steer that pins them (their own;
    a collection admin's stores; every job, for a data admin)."""

    job = serializers.UUIDField(
        required=False, help_text="A job that has ended, whose staged copies to release."
    )
    ids = FileListField(
        child=StrictStringField(max_length=64),
        required=False,
        allow_empty=False,
        help_text="Catalogue ids of files whose staged copies to release.",
    )
    paths = FileListField(
        child=StrictStringField(max_length=1024),
        required=False,
        allow_empty=False,
        help_text="Paths (relative to the store's roots) whose staged copies to release.",
    )

    def validate(self, attrs):
        given = [key for key in ("job", "ids", "paths") if attrs.get(key) is not None]
        if len(given) != 1:
            raise serializers.ValidationError("name one of job, ids or paths")
        store = self.context["store"]
        if "job" in given:
            attrs["target"] = self._job(attrs["job"], store)
        elif "ids" in given:
            attrs["paths"] = [f.path for f in staging_files_resolve(store=store, ids=attrs["ids"])]
        else:
            try:
                attrs["paths"] = list(dict.fromkeys(clean_relative_path(p) for p in attrs["paths"]))
            except UnsafePathError as exc:
                raise serializers.ValidationError({"paths": [str(exc)]}) from exc
        return attrs

    def _job(self, job_uuid, store) -> Job:
        owner = self.context["owner"]
        job = visible_jobs(user=owner).filter(uuid=job_uuid).first() if owner else None
        if job is None:
            raise NotFoundError(f"no job with id {job_uuid}", field="job")
        if job.store_id != store.pk:
            raise ServiceError(f"job {job_uuid} is on another store", field="job")
        if job.status in ACTIVE_STATUSES:
            raise ConflictError(
                f"job {job_uuid} is {job.status}; release its copies once it has ended "
                "(or cancel it)"
            )
        return job


def create(request: TaskRequest):
    target = request.parameters.get("target")
    if target is not None:
        paths = list(
            Pin.objects.filter(job=target, released_at__isnull=True)
            .order_by("path")
            .values_list("path", flat=True)
        )
        parameters = {"job": str(target.uuid)}
    else:
        paths, parameters = request.parameters["paths"], {}
    return job_create(
        owner=request.owner,
        store=request.store,
        task="release",
        source=request.source,
        items=[Item(path=path, size=0) for path in paths],
        parameters=parameters,
    )


def release_item(item, store, reporter) -> None:
    job = reporter.subjob.job
    if "job" in job.parameters:
        target = Job.objects.filter(uuid=job.parameters["job"]).first()
        if target is None:
            raise ItemFailed(f"job {job.parameters['job']} no longer exists")
        released = job_release(job=target, paths=[item.path])
    else:
        released = paths_release(store=store, paths=[item.path], jobs=visible_jobs(user=job.owner))
    item_result_record(item_id=item.pk, result={"pins_released": released})


register(
    TaskType(
        name="release",
        description="Unpin staged copies, of one of your jobs or of given files; the sweeper "
        "deletes a copy once nothing pins it.",
        parameters=ReleaseParameters,
        create=create,
        work=release_item,
        response_text=lambda job: (
            f"Release of {job.files_total} staged copies was accepted as job {job.uuid}."
        ),
        result_columns=("path", "status", "pins_released", "error"),
    )
)
