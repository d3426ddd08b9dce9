"""The recall scheduler with real `celery worker` and `celery beat` processes and a simulated
tape library: the drive cap holds, each cartridge is mounted once and read in position order,
and a worker killed while it holds a drive costs nothing but the lease: the drive comes back
and the cartridge's files finish on another worker. Rows are sampled throughout each run."""

import os
import random
import signal
import time
from pathlib import Path

import pytest
import requests

from staging.models import File, Item, Job, JobStatus, SubJob, TapeDrive, TapeLibrary
from staging.roles import Role
from staging.services.accounts import token_create
from staging.services.jobs import job_cancel, job_create_staging
from tests.factories import UserFactory
from tests.integration.dts_client import dts_headers, dts_stage, poll
from tests.integration.test_dispatch_with_workers import sample_until_done
from tests.workers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FAST_DISPATCH = {"DISPATCH_INTERVAL_SECONDS": "1", "RECONCILER_INTERVAL_SECONDS": "1"}
LOCATE = 0.01  # seconds per position
VIDS = ("V1", "V2", "V3")


@pytest.fixture
def tape_files(archive_files, tape_store):
    """Four files on each of three cartridges, at shuffled positions with gaps."""
    rng = random.Random(17)
    layout = {}
    for vid in VIDS:
        positions = sorted(rng.sample(range(20), 4))
        rng.shuffle(positions)
        for n, position in enumerate(positions):
            layout[f"{vid}/{n}.bin"] = (vid, position)
    files = archive_files({path: os.urandom(2000) for path in layout}, tape_store)
    for file in files:
        vid, position = layout[file.path]
        File.objects.filter(pk=file.pk).update(tape_vid=vid, tape_position=position)
    return files, layout


def library_for(store, **fields) -> TapeLibrary:
    settings = dict(
        drives=2,
        mount_seconds=0.3,
        unmount_seconds=0.1,
        locate_seconds_per_position=LOCATE,
        read_mb_per_second=1000,
        min_files=1,
    )
    return TapeLibrary.objects.create(store=store, **{**settings, **fields})


def cartridges_read(library) -> int:
    """Cartridges that workers hold a drive for now."""
    held = TapeDrive.objects.filter(library=library).exclude(holder="")
    return held.values("holder_vid").distinct().count()


def least_locate_seconds(layout) -> float:
    """Reading each cartridge's files in position order from the start of the tape: the head
    travels to the last file, less the files read on the way (the head rests past each)."""
    total = 0
    for vid in VIDS:
        positions = [p for v, p in layout.values() if v == vid]
        total += max(positions) - (len(positions) - 1)
    return total * LOCATE


def test_three_requests_over_three_cartridges_mount_each_once_in_position_order(
    tape_store, tape_files, start_worker, start_beat
):
    files, layout = tape_files
    # A cartridge waits until all four of its files are asked for.
    library = library_for(tape_store, min_files=4)
    start_worker(concurrency=4, **FAST_DISPATCH)
    start_beat(**FAST_DISPATCH)

    # Three requests, each a file of every cartridge and more: in request order every file
    # would need a mount.
    owner = UserFactory()
    jobs = [
        job_create_staging(owner=owner, store=tape_store, files=files[n::3], source="api")
        for n in range(3)
    ]
    samples = sample_until_done(
        jobs,
        lambda: (
            cartridges_read(library),
            TapeDrive.objects.filter(library=library).exclude(holder="").count(),
        ),
    )

    assert {j.status for j in Job.objects.filter(pk__in=[j.pk for j in jobs])} == {
        JobStatus.FINISHED
    }
    assert max(c for c, _ in samples) <= 2 and max(d for _, d in samples) <= 2
    drives = TapeDrive.objects.filter(library=library)
    assert sum(d.mounts for d in drives) == len(VIDS)
    assert sum(d.files_read for d in drives) == len(files)
    # Any file read out of position order would move the head further.
    assert sum(d.seek_seconds for d in drives) == pytest.approx(least_locate_seconds(layout))
    for file in files:
        staged = Path(tape_store.staging_root) / file.path
        assert staged.read_bytes() == (Path(tape_store.archive_root) / file.path).read_bytes()


def test_a_worker_killed_holding_a_drive_frees_it_when_its_lease_expires(
    tape_store, tape_files, start_worker, start_beat
):
    files, _ = tape_files
    # One drive and slow mounts: the victim holds the drive while it mounts the first cartridge.
    library = library_for(tape_store, drives=1, mount_seconds=1.0)
    knobs = {
        **FAST_DISPATCH,
        "STAGING_LEASE_SECONDS": "3",
        "STAGING_HEARTBEAT_SECONDS": "1",
        "REAPER_INTERVAL_SECONDS": "1",
    }
    victim = start_worker(concurrency=1, **knobs)
    start_beat(**knobs)
    job = job_create_staging(owner=UserFactory(), store=tape_store, files=files, source="api")

    drive = TapeDrive.objects.filter(library=library)
    wait_until(lambda: drive.exclude(holder="").exists(), timeout=30, what="the drive taken")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.process.wait(timeout=10)
    killed_at = time.monotonic()
    start_worker(concurrency=1, **knobs)

    wait_until(
        lambda: Job.objects.get(pk=job.pk).status == JobStatus.FINISHED,
        timeout=90,
        what="the job finished on the other worker",
    )
    print(f"\nworker killed holding the drive: job ended {time.monotonic() - killed_at:.1f}s later")
    assert Job.objects.get(pk=job.pk).files_done == len(files)
    assert drive.get().holder == ""
    for file in files:
        assert (Path(tape_store.staging_root) / file.path).exists()


def test_the_dts_stages_from_a_tape_store_through_the_scheduler(
    live_server, tape_store, tape_files, start_worker, broker
):
    files, _ = tape_files
    library = library_for(tape_store)
    start_worker(concurrency=3, **FAST_DISPATCH)
    headers = dts_headers()

    request_id, status_url = dts_stage(live_server.url, [f.id for f in files], headers)
    body = poll(status_url, headers, lambda b: b["status"] != "staging")

    assert body == {"status": "ready"}
    job = Job.objects.get(uuid=request_id)
    assert set(job.subjobs.values_list("tape_vid", flat=True)) == set(VIDS)
    assert sum(TapeDrive.objects.filter(library=library).values_list("mounts", flat=True)) == 3
    for file in files:
        assert (Path(tape_store.staging_root) / file.path).exists()


def test_the_wlcg_tape_api_stages_from_a_tape_store_through_the_scheduler(
    live_server, tape_store, tape_files, start_worker, broker
):
    files, _ = tape_files
    library = library_for(tape_store)
    start_worker(concurrency=3, **FAST_DISPATCH)
    headers = {"Authorization": f"Bearer {token_create(username='alice', role=Role.DATA_USER)}"}
    api = f"{live_server.url}/tape/api/v1"

    created = requests.post(
        f"{api}/stage",
        json={"files": [{"path": f"/tape/{f.path}"} for f in files]},
        headers=headers,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    body = poll(
        f"{api}/stage/{created.json()['requestId']}",
        headers,
        lambda b: all(f["state"] not in ("SUBMITTED", "STARTED") for f in b["files"]),
    )

    assert {f["state"] for f in body["files"]} == {"COMPLETED"}
    assert sum(TapeDrive.objects.filter(library=library).values_list("mounts", flat=True)) == 3
    archiveinfo = requests.post(
        f"{api}/archiveinfo", json={"paths": [f"/tape/{files[0].path}"]}, headers=headers
    )
    assert archiveinfo.json()[0]["locality"] == "DISK_AND_TAPE"


def test_a_request_for_a_mounted_cartridge_joins_it_before_it_unmounts(
    tape_store, tape_files, start_worker, start_beat
):
    files, layout = tape_files
    on_v1 = [f for f in files if layout[f.path][0] == "V1"]
    on_v2 = [f for f in files if layout[f.path][0] == "V2"]
    # One drive and a slow mount: the later requests arrive while V1 mounts.
    library = library_for(tape_store, drives=1, mount_seconds=1.5)
    start_worker(concurrency=3, **FAST_DISPATCH)
    start_beat(**FAST_DISPATCH)
    owner = UserFactory()

    first = job_create_staging(owner=owner, store=tape_store, files=on_v1[:2], source="api")
    drive = TapeDrive.objects.filter(library=library)
    wait_until(lambda: drive.filter(holder_vid="V1").exists(), timeout=30, what="V1 mounting")
    other = job_create_staging(owner=owner, store=tape_store, files=on_v2, source="api")
    late = job_create_staging(owner=owner, store=tape_store, files=on_v1[2:], source="api")
    jobs = [first, other, late]
    sample_until_done(jobs, lambda: None)

    statuses = Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("status", flat=True)
    assert set(statuses) == {JobStatus.FINISHED}
    # The late V1 files were claimed by the run that held V1's drive (its task id) and read on
    # that one mount, before V2 took the drive: two mounts.
    run_of = dict(SubJob.objects.filter(tape_vid="V1").values_list("job_id", "celery_task_id"))
    assert run_of[late.pk] == run_of[first.pk]
    assert drive.get().mounts == 2


def test_a_job_cancelled_while_its_cartridge_is_read_stops_and_the_other_job_goes_on(
    tape_store, tape_files, start_worker, start_beat
):
    files, layout = tape_files
    on_v1 = [f for f in files if layout[f.path][0] == "V1"]
    on_v2 = [f for f in files if layout[f.path][0] == "V2"]
    # Slow reads (about 0.5 s a file): the cancel lands while V1 is being read.
    library = library_for(tape_store, drives=1, read_mb_per_second=0.004)
    knobs = {**FAST_DISPATCH, "STAGING_PROGRESS_INTERVAL_SECONDS": "0.1"}
    start_worker(concurrency=2, **knobs)
    start_beat(**knobs)
    owner = UserFactory()
    doomed = job_create_staging(owner=owner, store=tape_store, files=on_v1, source="api")
    wait_until(
        lambda: Item.objects.filter(job=doomed, status=JobStatus.FINISHED).exists(),
        timeout=30,
        what="V1's first file read",
    )
    kept = job_create_staging(owner=owner, store=tape_store, files=on_v2, source="api")
    job_cancel(job=Job.objects.get(pk=doomed.pk))
    sample_until_done([doomed, kept], lambda: None)

    assert Job.objects.get(pk=doomed.pk).status == JobStatus.CANCELLED
    staged = [f for f in on_v1 if (Path(tape_store.staging_root) / f.path).exists()]
    assert 1 <= len(staged) < len(on_v1)
    assert Job.objects.get(pk=kept.pk).status == JobStatus.FINISHED
    drive = TapeDrive.objects.get(library=library)
    assert drive.holder == "" and drive.mounts == 2
