"""stage: copy files from the archive into the staging area and pin them for a lifetime (what
the DTS and the jobs API ask for), optionally verifying each copy against the catalogue."""

from django.template.defaultfilters import pluralize
from rest_framework import serializers

from staging.catalogue.parameters import FilesParameters, LifetimeField, lifetime_text
from staging.catalogue.registry import TaskRequest, TaskType, register
from staging.services.catalogue_checksums import staged_copy_verify
from staging.services.execution import stage_item
from staging.services.staged_copies import subjob_temporaries_remove
from staging.services.staging_jobs import staging_job_create


class StageParameters(FilesParameters):
    """Files to stage, by catalogue id or by path (one of the two)."""

    lifetime = LifetimeField(
        required=False,
        help_text="How long the staged copies stay pinned once ready, as an ISO 8601 duration "
        "(P7D); default STAGING_DEFAULT_LIFETIME_DAYS.",
    )
    verify = serializers.BooleanField(
        default=False,
        help_text="Compare each staged copy's checksum with the catalogue's (where the catalogue "
        "had none: the MD5 the copy took of the bytes it read, or, for a copy already in place, "
        "one computed from the archive); a mismatch fails the file and removes the copy "
        "(or, when other requests pin it, keeps it and flags it to be copied again).",
    )


def create(request: TaskRequest):
    parameters = request.parameters
    recorded = {"verify": parameters["verify"]}
    if parameters.get("lifetime") is not None:
        recorded["lifetime"] = lifetime_text(parameters["lifetime"])
    return staging_job_create(
        owner=request.owner,
        store=request.store,
        files=parameters["files"],
        source=request.source,
        lifetime=parameters.get("lifetime"),
        parameters=recorded,
        task="stage",
    )


def stage_and_verify(item, store, reporter) -> None:
    # The first item of each claim of a sub-job clears its directories of dead temporaries.
    subjob_temporaries_remove(subjob=reporter.subjob, store=store)
    # The pins on the path are stamped with the archive version the copy holds in the batch's
    # write (the reporter collects it).
    stage_item(item, store, reporter)
    if reporter.subjob.job.parameters.get("verify"):
        staged_copy_verify(
            item=item,
            store=store,
            should_stop=reporter.should_stop,
            # Renews the lease (and re-reads the cancel flag) when a progress report is due.
            keep_alive=lambda: reporter.add_bytes(0),
        )


register(
    TaskType(
        name="stage",
        description="Copy files from the archive into the staging area and pin them for a "
        "lifetime; with verify, check each copy's checksum against the catalogue.",
        parameters=StageParameters,
        create=create,
        work=stage_and_verify,
        response_text=lambda job: (
            f"Request to stage {job.files_total} file{pluralize(job.files_total)} was accepted "
            f"as job {job.uuid}."
        ),
        # A verified copy's checksum is shown beside the file.
        extra_columns=lambda job: ("algorithm", "checksum") if job.parameters.get("verify") else (),
    )
)
