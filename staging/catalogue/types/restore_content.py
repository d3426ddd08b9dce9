"""restore-content: DuraCloud's Glacier task. Content on tape is recalled into the staging area
and stays available for a lifetime (14 days unless asked otherwise, as Glacier restores do).

DuraCloud names content ``spaceID/contentID``. Here a space is a top-level directory of the
store's archive and a content id the path below it (it may contain ``/``), so
``genomes/run1/reads.fq`` is the file ``run1/reads.fq`` of the directory ``genomes``: the file
at ``genomes/run1/reads.fq`` relative to the archive root, and staged at the same path under
the staging root. While a restore of an item is in progress (its job not yet ended), asking
again is a conflict, as Glacier answers RestoreAlreadyInProgress."""

from datetime import timedelta

from django.db import transaction
from rest_framework import serializers

from staging.catalogue.fields import StrictStringField
from staging.catalogue.parameters import LifetimeField, TaskParameters, lifetime_text
from staging.catalogue.registry import TaskRequest, TaskType, register
from staging.errors import ConflictError, NotFoundError, ServiceError
from staging.models import ACTIVE_STATUSES, Item, Store, StoreKind
from staging.selectors import files_by_paths
from staging.services.execution import stage_item
from staging.services.staging_jobs import staging_job_create
from staging.storage import UnsafePathError, clean_relative_path

NAME = "restore-content"
RESTORE_LIFETIME = timedelta(days=14)
MISSING_SEPARATOR = "A path including a space ID and a content ID (separated by a '/') is required."


class RestoreParameters(TaskParameters):
    """The content item to restore: a space (a top-level directory of the archive) and a
    content id (the path below it)."""

    spaceID = StrictStringField(max_length=255, help_text="Top-level directory of the archive.")
    contentID = StrictStringField(max_length=1024, help_text="Path below the space directory.")
    lifetime = LifetimeField(
        required=False,
        help_text="How long the restored copy stays available, as an ISO 8601 duration; P14D "
        "unless given.",
    )

    def validate(self, attrs):
        space, content = attrs["spaceID"], attrs["contentID"]
        if "/" in space or space in (".", ".."):
            raise serializers.ValidationError({"spaceID": ["a space is one directory name"]})
        try:
            path = clean_relative_path(f"{space}/{content}")
        except UnsafePathError as exc:
            raise serializers.ValidationError({"contentID": [str(exc)]}) from exc
        store = self.context["store"]
        file = files_by_paths(store=store, paths=[path]).get(path)
        if file is None:
            raise NotFoundError(
                f"content item {content} does not exist in space {space} of store {store.slug}",
                field="contentID",
            )
        attrs["file"] = file
        return attrs


def parameters_from_text(raw: str) -> dict:
    """``spaceID/contentID``, split at the first ``/``."""
    text = raw.strip("\r\n")
    space, separator, content = text.partition("/")
    if not separator or not space or not content:
        raise ServiceError(MISSING_SEPARATOR)
    return {"spaceID": space, "contentID": content}


@transaction.atomic
def create(request: TaskRequest):
    parameters = request.parameters
    space, content, file = parameters["spaceID"], parameters["contentID"], parameters["file"]
    # Job creation locks the store row too; taking it first makes the check and the new job
    # one step for concurrent requests, so two restores of one item cannot both start.
    Store.objects.select_for_update().filter(pk=request.store.pk).exists()
    in_progress = Item.objects.filter(
        job__store=request.store,
        job__task=NAME,
        job__status__in=ACTIVE_STATUSES,
        path=file.path,
    ).exists()
    if in_progress:
        raise ConflictError(f"Restore is already in progress for {space}/{content}")
    lifetime = parameters.get("lifetime") or RESTORE_LIFETIME
    return staging_job_create(
        owner=request.owner,
        store=request.store,
        files=[file],
        source=request.source,
        lifetime=lifetime,
        parameters={"spaceID": space, "contentID": content, "lifetime": lifetime_text(lifetime)},
        task=NAME,
    )


def response_text(job) -> str:
    # DuraCloud's words for a restore that has been set going.
    space, content = job.parameters["spaceID"], job.parameters["contentID"]
    return f"Request to restore content item {content} in space {space} was successful."


register(
    TaskType(
        name=NAME,
        description="Restore a content item (spaceID/contentID) from tape into the staging area, "
        "where it stays available for 14 days unless another lifetime is asked for.",
        parameters=RestoreParameters,
        store_kinds=frozenset({StoreKind.POSIX_TAPE}),
        create=create,
        work=stage_item,
        text_body=parameters_from_text,
        response_text=response_text,
    )
)
