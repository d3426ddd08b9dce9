"""The tape libraries where an operator looks: the dashboard's drives (what each holds and
reads) and cartridge queues (why each waits), and the tape counters in /metrics."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from staging.models import JobStatus, StoreKind, SubJob, TapeDrive, TapeLibrary
from tests.api.test_metrics import samples
from tests.factories import JobFactory, StoreFactory

DASHBOARD = "/admin/dashboard/"

pytestmark = pytest.mark.django_db


def library_reading(
    slug: str, *, reading: dict, idle: dict, waiting: list[dict], **limits
) -> TapeLibrary:
    """A tape store's library of two drives: drive 1 reads its mounted cartridge for a running
    sub-job (``reading``: the drive's fields), drive 2 has ``idle`` mounted and nobody reading,
    and the same job has a sub-job waiting for each of ``waiting`` (their fields)."""
    store = StoreFactory(slug=slug, kind=StoreKind.POSIX_TAPE)
    library = TapeLibrary.objects.create(store=store, drives=2, **limits)
    now = timezone.now()
    vid = reading["mounted_vid"]
    TapeDrive.objects.create(
        library=library,
        number=1,
        holder_vid=vid,
        lease_expires_at=now + timedelta(minutes=5),
        **reading,
    )
    TapeDrive.objects.create(library=library, number=2, **idle)
    job = JobFactory(store=store, status=JobStatus.RUNNING)
    SubJob.objects.create(
        job=job, sequence=1, tape_vid=vid, status=JobStatus.RUNNING, dispatched_at=now
    )
    for sequence, fields in enumerate(waiting, start=2):
        SubJob.objects.create(job=job, sequence=sequence, **fields)
    return library


@pytest.fixture
def library():
    return library_reading(
        "tape1",
        reading={
            "mounted_vid": "VOL001",
            "holder": "celery@host:42",
            "reading_path": "run1/a.fastq",
            "head_position": 17,
            "mounts": 4,
            "bytes_read": 4_000_000,
            "seek_seconds": 1.5,
        },
        idle={"mounted_vid": "VOL009", "mounts": 1},
        waiting=[{"tape_vid": "VOL002", "files_total": 3, "bytes_total": 300}],
        min_files=10,
        max_wait=timedelta(minutes=5),
    )


def test_the_dashboard_shows_drives_and_why_each_cartridge_waits(operator_client, library):
    page = operator_client.get(DASHBOARD).content.decode()

    assert "Tape libraries" in page
    assert "5 mounts" in page  # 4 + 1
    assert "VOL001: <code>run1/a.fastq</code>" in page  # drive 1 reads
    assert "idle" in page  # drive 2 holds VOL009 but nobody reads
    assert "being read" in page
    assert re.search(r"waiting for more: 3 of 10 files; oldest \d+ s of 300 s", page)


def test_metrics_count_mounts_bytes_per_mount_and_seek_time(client, broker, library):
    found = samples(client.get("/metrics"))

    assert found[("stagingsvc_tape_mounts_total", (("store", "tape1"),))] == 5
    assert found[("stagingsvc_tape_read_bytes_total", (("store", "tape1"),))] == 4_000_000
    assert found[("stagingsvc_tape_bytes_per_mount", (("store", "tape1"),))] == 800_000
    assert found[("stagingsvc_tape_seek_seconds_total", (("store", "tape1"),))] == 1.5
    assert found[("stagingsvc_tape_drives_busy", (("store", "tape1"),))] == 1
    assert found[("stagingsvc_tape_cartridges_waiting", (("store", "tape1"),))] == 1
