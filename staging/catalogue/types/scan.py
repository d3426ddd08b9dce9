"""scan: walk a store's archive (or the part under a prefix), bring the catalogue up to date,
and report one row per file with its metadata (seed 001's rows). The rows of a big tree do not
fit a database row: they are written to the job's results file as the walk goes, and streamed
from there as CSV or JSON."""

import grp
import pwd
import stat as stat_module
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import PurePosixPath

from rest_framework import serializers

from staging.catalogue.fields import StrictStringField
from staging.catalogue.parameters import TaskParameters, text_as_json_or_paths
from staging.catalogue.registry import TaskRequest, TaskType, register
from staging.errors import ServiceError
from staging.models import Item
from staging.result_files import ResultsWriter
from staging.services.catalogue import catalogue_scan, catalogue_scan_prefix_check
from staging.services.execution import ItemFailed, item_result_record
from staging.services.job_results import job_result_file_set
from staging.services.jobs import job_create
from staging.storage import StagingCancelled

COLUMNS = (
    "store",
    "path",
    "name",
    "extension",
    "size",
    "owner",
    "group",
    "permissions",
    "mtime",
    "atime",
    "ctime",
    "inode",
    "md5",
    "sha256",
    "adler32",
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ScanParameters(TaskParameters):
    """The part of the archive to scan: all of it, or the directory at a prefix."""

    prefix = StrictStringField(
        required=False,
        allow_blank=True,
        default="",
        max_length=1024,
        help_text="A directory relative to the archive root; the whole archive when empty.",
    )

    def validate(self, attrs):
        try:
            attrs["prefix"] = catalogue_scan_prefix_check(
                store=self.context["store"], prefix=attrs.get("prefix", "")
            )
        except ServiceError as exc:
            raise serializers.ValidationError({"prefix": [exc.detail]}) from exc
        return attrs


def parameters_from_text(raw: str) -> dict:
    """The prefix as the whole body (or a JSON object, or nothing: the whole archive)."""
    text = raw.strip()
    if text.startswith("{"):
        return text_as_json_or_paths(text)
    return {"prefix": text}


def create(request: TaskRequest):
    prefix = request.parameters["prefix"]
    return job_create(
        owner=request.owner,
        store=request.store,
        task="scan",
        source=request.source,
        # One item: the directory the scan walks, so retries, the reaper and cancel treat a
        # scan like any other piece of work.
        items=[Item(path=prefix, size=0)],
        parameters={"prefix": prefix},
    )


@cache
def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@cache
def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def timestamp(nanoseconds: int) -> str:
    """ISO 8601 in UTC to the microsecond, computed from the integer nanoseconds so the text
    is exact (no float rounding)."""
    return (EPOCH + timedelta(microseconds=nanoseconds // 1000)).isoformat()


def scan_row(store_slug: str, relative: str, info, checksums: dict[str, str]) -> tuple:
    name = PurePosixPath(relative).name
    return (
        store_slug,
        relative,
        name,
        PurePosixPath(name).suffix[1:],
        info.st_size,
        _user_name(info.st_uid),
        _group_name(info.st_gid),
        stat_module.filemode(info.st_mode),
        timestamp(info.st_mtime_ns),
        timestamp(info.st_atime_ns),
        timestamp(info.st_ctime_ns),
        info.st_ino,
        checksums.get("md5") or None,
        checksums.get("sha256") or None,
        checksums.get("adler32") or None,
    )


def scan_item(item, store, reporter) -> None:
    job = reporter.subjob.job
    with ResultsWriter(job_uuid=job.uuid, columns=COLUMNS) as out:

        def visit(relative: str, info, checksums: dict[str, str]) -> None:
            out.write(scan_row(store.slug, relative, info, checksums))
            reporter.add_bytes(0)  # renews the lease and re-reads the cancel flag, in time
            if reporter.should_stop():
                raise StagingCancelled()

        try:
            summary = catalogue_scan(
                store=store,
                prefix=item.path,
                on_file=visit,
                keep_alive=lambda: reporter.add_bytes(0),
                should_stop=reporter.should_stop,
            )
        # The prefix is gone since the request was accepted, or is a symlink now.
        except ServiceError as exc:
            raise ItemFailed(exc.detail) from exc
        name = out.commit()
    job_result_file_set(job_id=job.pk, name=name)
    item_result_record(
        item_id=item.pk,
        result={
            "files_seen": summary.seen,
            "files_added": summary.added,
            "files_updated": summary.updated,
            "files_unchanged": summary.unchanged,
            "files_vanished": summary.vanished,
            "files_hashed": summary.hashed,
        },
    )


register(
    TaskType(
        name="scan",
        description="Walk the archive (or a directory of it), bring the catalogue up to date, "
        "and list every file with its metadata: store, path, name, extension, size, owner, "
        "group, permissions, mtime, atime, ctime, inode and the checksums the catalogue knows.",
        parameters=ScanParameters,
        create=create,
        work=scan_item,
        text_body=parameters_from_text,
        response_text=lambda job: (
            f"Scan of {job.parameters['prefix'] or 'the whole archive'} in store "
            f"{job.store.slug} was accepted as job {job.uuid}."
        ),
        result_columns=COLUMNS,
        results_in_file=True,
        summary_from_item=True,
    )
)
