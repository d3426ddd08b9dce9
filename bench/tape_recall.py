"""P10 tape recall: 2,000 files spread at random over 40 cartridges, asked for by 20 requests of
100 random files arriving over a few seconds, on a simulated library of 2 drives (2 s mount,
0.5 s unmount, 5 ms per position located, 200 MB/s). Total time from the first request to the
last file ready, and the mounts, for (a) the recall scheduler, (b) the same requests dispatched
in request order (the scheduler off, sub-jobs of the service's size, as many worker processes
as drives) and (c) the offline optimum: every file known in advance, each cartridge mounted once
and read in position order, the cartridges spread over the drives (computed from the model, the
longest cartridges first onto the drive free soonest). Goals: (a) at least 3x faster than (b),
within 1.25x of (c), mounts at most 1.5x the cartridges.

The scheduler's run (a) and the optimum (c) use the issue's times as they are. Request order
(b) mounts for nearly every file, which at those times takes the better part of an hour; it runs
with every simulated time multiplied by 0.1 (mount 0.2 s, ...; arrivals too), and its time is
brought back to full scale by adding the simulated time its busiest drive spent (read from the
drive's counters) times 9: the bookkeeping it measured is kept as it was, unscaled. Both the
measured and the brought-back figures are in the details. The simulation's times are chosen,
not measured: the ratios are the figure."""

import hashlib
import random
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from bench.context import BenchContext, jobs_wait
from bench.harness import Result
from bench.workload import bench_owner, file_write, store_with_catalogue
from staging.models import File, Job, StoreKind, SubJob, TapeDrive, TapeLibrary
from staging.services.dispatch import dispatch_wake
from staging.services.jobs import job_create_staging
from staging.tape_library import read_cost

DRIVES = 2
MOUNT, UNMOUNT, LOCATE, READ_MB = 2.0, 0.5, 0.005, 200.0
FILE_BYTES = 64 * 1024
FILE_BLOCK = bytes(range(256)) * (FILE_BYTES // 256)
# Positions on a cartridge: its files at random distinct positions below this many per file.
POSITION_SPREAD = 2
ARRIVAL_SECONDS = 3.0
GOALS = {"vs_fifo": 3.0, "vs_optimum": 1.25, "mounts_per_cartridge": 1.5}
# A dispatch pass at least this often (beat's part; the bench runs no beat).
TICK_SECONDS = 0.5


@dataclass(frozen=True)
class Scenario:
    files: int
    cartridges: int
    requests: int
    # Simulated times of the request-order run (b), scaled down (see the module).
    fifo_scale: float

    @property
    def per_request(self) -> int:
        return self.files // self.requests


FULL_SCENARIO = Scenario(files=2000, cartridges=40, requests=20, fifo_scale=0.1)
QUICK_SCENARIO = Scenario(files=400, cartridges=10, requests=8, fifo_scale=0.1)


def layout(scenario: Scenario, rng: random.Random) -> dict[str, tuple[str, int]]:
    """path -> (cartridge, position): files dealt at random over the cartridges."""
    vids = [f"VOL{n:03d}" for n in range(scenario.cartridges)]
    on: dict[str, list[str]] = {vid: [] for vid in vids}
    for n in range(scenario.files):
        on[rng.choice(vids)].append(f"p10/f{n:05d}.dat")
    placed = {}
    for vid, paths in on.items():
        positions = sorted(rng.sample(range(len(paths) * POSITION_SPREAD), len(paths)))
        for path, position in zip(paths, positions, strict=True):
            placed[path] = (vid, position)
    return placed


def library_settings(scale: float) -> dict:
    return {
        "drives": DRIVES,
        "mount_seconds": MOUNT * scale,
        "unmount_seconds": UNMOUNT * scale,
        "locate_seconds_per_position": LOCATE * scale,
        "read_mb_per_second": READ_MB / scale,
    }


def optimum_seconds(placed: dict[str, tuple[str, int]], scale: float) -> float:
    """(c): each cartridge once, in position order, longest first onto the drive free soonest;
    a drive unmounts its previous cartridge before the next (not after its last)."""
    library = TapeLibrary(**library_settings(scale))
    by_vid: dict[str, list[int]] = {}
    for vid, position in placed.values():
        by_vid.setdefault(vid, []).append(position)
    durations = []
    for positions in by_vid.values():
        mounted, head, total = "", 0, 0.0
        for position in sorted(positions):
            cost = read_cost(
                library, mounted=mounted, head=head, vid="x", position=position, size=FILE_BYTES
            )
            total += cost.mount + cost.locate + cost.read
            mounted, head = "x", position + 1
        durations.append(total)
    drives = [0.0] * DRIVES
    used = [False] * DRIVES
    for duration in sorted(durations, reverse=True):
        n = drives.index(min(drives))
        drives[n] += duration + (library.unmount_seconds if used[n] else 0.0)
        used[n] = True
    return max(drives)


class Ticker:
    """Asks for a dispatch pass every TICK_SECONDS, as beat would."""

    def __init__(self):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        from django.db import connection

        try:
            while not self.stop.wait(TICK_SECONDS):
                dispatch_wake()
        finally:
            connection.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)


def run_once(scenario, placed, requests, *, root, name, scheduler, scale) -> dict:
    store, files = store_with_catalogue(
        f"bench-tape-{name}",
        root / "archive",
        root / f"staging-{name}",
        kind=StoreKind.POSIX_TAPE,
        hard_link=True,
    )
    # Every file's MD5 known, as an operator's importmd5 gives them: a tape store's scan reads
    # no content, and a copy of a file without one hashes it and records it, file by file.
    md5 = hashlib.md5(FILE_BLOCK).hexdigest()
    for path, (vid, position) in placed.items():
        File.objects.filter(store=store, path=path).update(
            tape_vid=vid, tape_position=position, md5=md5
        )
    per_vid = scenario.files / scenario.cartridges
    library = TapeLibrary.objects.create(
        store=store,
        scheduler=scheduler,
        # A cartridge is mounted once an eighth of the files expected of it wait (the rest join
        # while it mounts), or once its oldest has waited twice the arrival spread.
        min_files=max(1, int(per_vid / 8)),
        max_wait=timedelta(seconds=ARRIVAL_SECONDS * scale * 2),
        **library_settings(scale),
    )
    by_path = {f.path: f for f in files}
    gap = ARRIVAL_SECONDS * scale / max(len(requests) - 1, 1)
    started = time.time()
    job_ids = []
    with Ticker():
        for n, paths in enumerate(requests):
            if n:
                time.sleep(gap)
            job = job_create_staging(
                owner=bench_owner(),
                store=store,
                files=[by_path[p] for p in paths],
                source="bench",
            )
            job_ids.append(job.pk)
        ended = jobs_wait(job_ids, timeout=3600)
    drives = TapeDrive.objects.filter(library=library)
    # Per cartridge: its first sub-job's claim and its last sub-job's end, from the start.
    spans: dict[str, list[float]] = {}
    rows = SubJob.objects.filter(job_id__in=job_ids).exclude(tape_vid="")
    for vid, began, ended_at in rows.values_list("tape_vid", "started_at", "finished_at"):
        span = spans.setdefault(vid, [began.timestamp(), ended_at.timestamp()])
        span[0], span[1] = min(span[0], began.timestamp()), max(span[1], ended_at.timestamp())
    timeline = sorted((round(b - started, 2), round(e - started, 2)) for b, e in spans.values())
    simulated = [
        d.mount_seconds + d.seek_seconds + d.bytes_read / (library.read_mb_per_second * 1e6)
        for d in drives
    ]
    return {
        "seconds": ended - started,
        "mounts": sum(d.mounts for d in drives),
        "seek_seconds": round(sum(d.seek_seconds for d in drives), 3),
        "busiest_drive_simulated_seconds": round(max(simulated), 3),
        "jobs": Job.objects.filter(pk__in=job_ids).count(),
        "scale": scale,
        "cartridge_claimed_and_ended": timeline,
    }


def run(ctx: BenchContext) -> list[Result]:
    scenario = QUICK_SCENARIO if ctx.sizes.label == "quick" else FULL_SCENARIO
    rng = random.Random(10)
    placed = layout(scenario, rng)
    paths = list(placed)
    rng.shuffle(paths)
    requests = [
        paths[n * scenario.per_request : (n + 1) * scenario.per_request]
        for n in range(scenario.requests)
    ]
    ctx.work_reset()
    root = ctx.temp_dir / "tape-recall"
    for path in paths:
        file_write(root / "archive" / path, FILE_BYTES, FILE_BLOCK, durable=False)
    runs = {}
    try:
        # As many worker processes as drives for request order (each holds a drive while it
        # reads); the scheduler's run gets two more, which end the sub-jobs of one cartridge
        # while the drive goes on with the next.
        ctx.workers(DRIVES + 2)
        runs["scheduler"] = run_once(
            scenario, placed, requests, root=root, name="a", scheduler=True, scale=1.0
        )
        ctx.workers(DRIVES)
        runs["fifo"] = run_once(
            scenario,
            placed,
            requests,
            root=root,
            name="b",
            scheduler=False,
            scale=scenario.fifo_scale,
        )
    finally:
        ctx.work_reset()
    optimum = optimum_seconds(placed, 1.0)
    a, b = runs["scheduler"], runs["fifo"]
    # (b) at full scale: its simulated time scaled back, its bookkeeping as measured.
    b["seconds_full_scale"] = b["seconds"] + b["busiest_drive_simulated_seconds"] * (
        1 / scenario.fifo_scale - 1
    )
    vs_fifo = b["seconds_full_scale"] / a["seconds"]
    vs_optimum = a["seconds"] / optimum
    mounts_ratio = a["mounts"] / scenario.cartridges
    met = {
        "vs_fifo": vs_fifo >= GOALS["vs_fifo"],
        "vs_optimum": vs_optimum <= GOALS["vs_optimum"],
        "mounts": mounts_ratio <= GOALS["mounts_per_cartridge"],
    }
    details = {
        "scenario": scenario.__dict__,
        "library": library_settings(1.0),
        "scheduler": a,
        "fifo": b,
        "optimum_seconds": round(optimum, 3),
        "vs_fifo": round(vs_fifo, 2),
        "vs_optimum": round(vs_optimum, 3),
        "mounts_per_cartridge": round(mounts_ratio, 2),
        "goals": GOALS,
        "goals_met": met,
    }
    name = (
        f"tape recall: {scenario.files:,} files on {scenario.cartridges} cartridges, "
        f"{scenario.requests} requests, {DRIVES} drives"
    )
    return [
        Result(
            "P10",
            name,
            "s to ready",
            a["seconds"],
            b["seconds_full_scale"],
            "the same requests in request order, scheduler off (run at x0.1, brought back; "
            "goal: ratio ≥ 3)",
            higher_is_better=False,
            details=details,
            note=(
                f"scheduler {a['seconds']:.1f}s, {a['mounts']} mounts for "
                f"{scenario.cartridges} cartridges ({mounts_ratio:.2f} per cartridge, goal ≤ "
                f"1.5); request order {b['seconds_full_scale']:.0f}s ({b['seconds']:.1f}s at "
                f"x{scenario.fifo_scale}), {b['mounts']} mounts "
                f"({vs_fifo:.1f}x, goal ≥ 3)"
            ),
        ),
        Result(
            "P10",
            name,
            "s to ready",
            a["seconds"],
            optimum,
            "the offline optimum, computed (goal: ratio ≥ 0.8, i.e. within 1.25x)",
            higher_is_better=False,
            details=details,
            note=f"scheduler {a['seconds']:.1f}s vs optimum {optimum:.1f}s ({vs_optimum:.2f}x)",
        ),
    ]
