"""checksum: compute md5, sha256 or adler32 of files of the archive, reading each in chunks,
keep them on the catalogue entries (where ``stage`` with ``verify`` finds them), and return
them as rows."""

from django.conf import settings
from django.template.defaultfilters import pluralize
from rest_framework import serializers

from staging.catalogue.parameters import FilesParameters
from staging.catalogue.registry import TaskRequest, TaskType, register
from staging.checksum_algorithms import ALGORITHMS, file_checksum
from staging.models import Item
from staging.services.catalogue_checksums import file_checksum_record
from staging.services.execution import item_result_record
from staging.services.jobs import job_create
from staging.storage import SizeMismatchError, resolve_under


class ChecksumParameters(FilesParameters):
    """Files to checksum, by catalogue id or by path (one of the two), and the algorithm."""

    algorithm = serializers.ChoiceField(
        choices=ALGORITHMS, default="sha256", help_text="The checksum to compute."
    )


def create(request: TaskRequest):
    files = request.parameters["files"]
    return job_create(
        owner=request.owner,
        store=request.store,
        task="checksum",
        source=request.source,
        items=[Item(file=f, path=f.path, size=f.size) for f in files],
        parameters={"algorithm": request.parameters["algorithm"]},
    )


def checksum_item(item, store, reporter) -> None:
    algorithm = reporter.subjob.job.parameters["algorithm"]
    value, read = file_checksum(
        resolve_under(store.archive_root, item.path),
        algorithm,
        chunk_bytes=min(settings.STAGING["COPY_CHUNK_BYTES"], 4 * 1024**2),
        on_progress=reporter.add_bytes,
        should_stop=reporter.should_stop,
    )
    if read != item.size:
        # The checksum describes other content than the catalogue entry: refuse to record it.
        raise SizeMismatchError(
            f"the file is {read} bytes, the catalogue says {item.size}: scan the store again"
        )
    file_checksum_record(file_id=item.file_id, size=read, algorithm=algorithm, value=value)
    item_result_record(item_id=item.pk, result={"algorithm": algorithm, "checksum": value})


register(
    TaskType(
        name="checksum",
        description="Compute the md5, sha256 or adler32 checksum of files, keep it in the "
        "catalogue (where stage with verify uses it) and list it per file.",
        parameters=ChecksumParameters,
        create=create,
        work=checksum_item,
        response_text=lambda job: (
            f"Checksum ({job.parameters['algorithm']}) of {job.files_total} "
            f"file{pluralize(job.files_total)} was accepted as job {job.uuid}."
        ),
        result_columns=("path", "file_id", "size", "status", "algorithm", "checksum", "error"),
    )
)
