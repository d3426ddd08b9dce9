"""The recall scheduler's choices (staging.services.recall) on a tape store with a simulated
library: waiting files regrouped by cartridge, which cartridges are eligible, the drive cap, and
late arrivals for a cartridge being read. Passes are run directly and publish to the real Redis
broker; tests/integration/test_tape_recall_with_workers.py runs them with real workers."""

from datetime import timedelta

import pytest
from django.utils import timezone

from staging.models import File, Job, JobStatus, SubJob, TapeLibrary
from staging.services.dispatch import subjobs_dispatch
from staging.services.jobs import job_create_staging
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def on_tape(archive_files, tape_store):
    """Files on the tape store at given cartridges and positions:
    ``on_tape({"a.bin": ("VID1", 3, 100)})`` (cartridge, position, size)."""

    def write(layout: dict[str, tuple[str, int, int]]) -> list[File]:
        contents = {path: b"t" * size for path, (_, _, size) in layout.items()}
        files = archive_files(contents, tape_store)
        for file in files:
            vid, position, _ = layout[file.path]
            File.objects.filter(pk=file.pk).update(tape_vid=vid, tape_position=position)
            file.tape_vid, file.tape_position = vid, position
        return files

    return write


@pytest.fixture
def library(tape_store):
    return TapeLibrary.objects.create(
        store=tape_store, drives=2, mount_seconds=0, unmount_seconds=0, min_files=1
    )


def submit(store, files, *, priority=3, owner=None):
    job = job_create_staging(owner=owner or UserFactory(), store=store, files=files, source="api")
    if priority != 3:
        Job.objects.filter(pk=job.pk).update(priority=priority)
    return job


def dispatched_vids(store) -> dict[str, int]:
    """Files dispatched per cartridge."""
    rows = SubJob.objects.filter(job__store=store, dispatched_at__isnull=False)
    vids: dict[str, int] = {}
    for vid, files in rows.values_list("tape_vid", "files_total"):
        vids[vid] = vids.get(vid, 0) + files
    return vids


def test_waiting_files_are_regrouped_into_one_subjob_per_job_and_cartridge(
    broker, tape_store, library, on_tape
):
    files = on_tape(
        {
            "a": ("V1", 5, 10),
            "b": ("V2", 1, 20),
            "c": ("V1", 2, 30),
            "d": ("", None, 40),  # location unknown: a group of its own
        }
    )
    library.drives = 4
    library.save()
    job = submit(tape_store, files)

    subjobs_dispatch()

    groups = {s.tape_vid: sorted(s.items.values_list("path", flat=True)) for s in job.subjobs.all()}
    no_vid = [vid for vid in groups if vid.startswith("no-vid:")]
    assert groups["V1"] == ["a", "c"] and groups["V2"] == ["b"] and len(no_vid) == 1
    assert groups[no_vid[0]] == ["d"]
    v1 = job.subjobs.get(tape_vid="V1")
    assert (v1.files_total, v1.bytes_total) == (2, 40)
    assert job.subjobs.count() == 3  # the request-order sub-job is gone


def test_a_cartridge_waits_for_min_files(broker, tape_store, library, on_tape):
    library.min_files = 3
    library.save()
    files = on_tape({f"{n}": ("V1", n, 10) for n in range(2)} | {"x": ("V2", 0, 10)})
    submit(tape_store, files[:2])
    subjobs_dispatch()
    assert dispatched_vids(tape_store) == {}

    more = on_tape({"2": ("V1", 2, 10)})
    submit(tape_store, more)
    subjobs_dispatch()
    assert dispatched_vids(tape_store) == {"V1": 3}  # V2 (one file) still waits


def test_a_cartridge_with_min_bytes_waiting_is_eligible(broker, tape_store, library, on_tape):
    library.min_files, library.min_bytes = 100, 1000
    library.save()
    files = on_tape({"big": ("V1", 0, 1200), "small": ("V2", 0, 10)})
    submit(tape_store, files)
    subjobs_dispatch()
    assert dispatched_vids(tape_store) == {"V1": 1}


def test_a_cartridge_whose_oldest_file_waited_max_wait_is_eligible(
    broker, tape_store, library, on_tape
):
    library.min_files, library.max_wait = 100, timedelta(minutes=10)
    library.save()
    old, new = on_tape({"old": ("V1", 0, 10), "new": ("V2", 0, 10)})
    old_job = submit(tape_store, [old])
    submit(tape_store, [new])
    Job.objects.filter(pk=old_job.pk).update(created_at=timezone.now() - timedelta(minutes=11))
    subjobs_dispatch()
    assert dispatched_vids(tape_store) == {"V1": 1}


def test_no_more_cartridges_than_drives_are_active(broker, tape_store, library, on_tape):
    files = on_tape({f"{vid}-{n}": (vid, n, 10) for vid in ("V1", "V2", "V3") for n in range(2)})
    submit(tape_store, files)
    subjobs_dispatch()
    first = dispatched_vids(tape_store)
    assert len(first) == 2

    subjobs_dispatch()  # nothing ended: no third cartridge
    assert dispatched_vids(tape_store) == first

    # One cartridge's work ends: the third takes its drive.
    done = SubJob.objects.filter(job__store=tape_store, tape_vid=next(iter(first)))
    done.update(status=JobStatus.FINISHED)
    subjobs_dispatch()
    assert set(dispatched_vids(tape_store)) == {"V1", "V2", "V3"}


def test_late_arrivals_for_an_active_cartridge_join_it(broker, tape_store, library, on_tape):
    library.min_files = 5
    library.save()
    files = on_tape({f"{n}": ("V1", n, 10) for n in range(6)})
    submit(tape_store, files[:5])
    subjobs_dispatch()
    assert dispatched_vids(tape_store) == {"V1": 5}

    submit(tape_store, files[5:])  # one file: below min_files, but its cartridge is being read
    subjobs_dispatch()
    assert dispatched_vids(tape_store) == {"V1": 6}


def test_higher_priority_cartridges_take_the_drives_first(broker, tape_store, library, on_tape):
    library.drives = 1
    library.save()
    low, high = on_tape({"low": ("V1", 0, 10), "high": ("V2", 0, 10)})
    submit(tape_store, [low])
    submit(tape_store, [high], priority=5)
    subjobs_dispatch()
    assert dispatched_vids(tape_store) == {"V2": 1}


def test_with_the_scheduler_off_subjobs_go_in_request_order(broker, tape_store, library, on_tape):
    library.scheduler = False
    library.save()
    files = on_tape({f"{n}": (f"V{n}", 0, 10) for n in range(3)})
    job = submit(tape_store, files)
    subjobs_dispatch()
    assert list(job.subjobs.values_list("tape_vid", flat=True)) == [""]
