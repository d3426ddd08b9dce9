"""P3 copy: MB/s staging about 1 GiB (a few large files and many small ones) with 2 worker
processes, against `cp -r` of the same files on the same disk followed by `sync` of the copies
(staging fsyncs every file, so the baseline's copies must reach the disk too); and the per-file
cost of hard-link mode against `cp -al`. Everything lives in the run's temporary folder."""

import os
import shutil
import subprocess
import time
from pathlib import Path

from bench.context import BenchContext
from bench.harness import Result
from bench.profiling import format_summary, summarise_file
from bench.workload import BLOCK, file_write, job_run, store_with_catalogue

PROFILE_BELOW = 0.9
MB = 1_000_000


def archive_write(archive: Path, sizes) -> tuple[int, int]:
    """The P3 tree: large files under large/, small ones under small/; returns (files, bytes)."""
    block = os.urandom(BLOCK)
    total = 0
    for i in range(sizes.copy_large_files):
        size = sizes.copy_large_mib * BLOCK
        file_write(archive / "large" / f"big{i:02d}.bin", size, block)
        total += size
    small = sizes.copy_small_kib * 1024
    for i in range(sizes.copy_small_files):
        file_write(archive / "small" / f"d{i // 128:02d}" / f"s{i:05d}.bin", small, block)
        total += small
    return sizes.copy_large_files + sizes.copy_small_files, total


def regular_files(root: Path) -> list[str]:
    return [str(p) for p in sorted(root.rglob("*")) if p.is_file()]


def cp_seconds(source: Path, target: Path, *, link: bool = False) -> float:
    """`cp -r` (or `cp -al`) of ``source`` to ``target``, then for copies `sync` of every copy."""
    started = time.perf_counter()
    subprocess.run(["cp", "-al" if link else "-r", str(source), str(target)], check=True)
    if not link:
        copies = regular_files(target)
        for start in range(0, len(copies), 500):
            subprocess.run(["sync", *copies[start : start + 500]], check=True)
    return time.perf_counter() - started


def read_only(root: Path) -> None:
    for path in regular_files(root):
        os.chmod(path, 0o444)


def links_check(archive: Path, staged: Path, files) -> None:
    """Refuse a hard-link figure made of copies."""
    copied = [
        f.path
        for f in files
        if not os.path.samefile(archive / f.path, staged / f.path)  # not the archive's inode
    ]
    if copied:
        raise RuntimeError(f"hard-link mode copied {len(copied)} files, e.g. {copied[0]}")


def run(ctx: BenchContext) -> list[Result]:
    sizes = ctx.sizes
    ctx.work_reset()
    worker_pid = ctx.workers(2)
    root = ctx.temp_dir / "copy"
    archive = root / "archive"
    try:
        count, total = archive_write(archive, sizes)
        cp_rate = total / MB / cp_seconds(archive, root / "cp")
        store, files = store_with_catalogue("bench-copy", archive, root / "staged")
        ours_rate = total / MB / job_run(store, files, timeout=600)
        shutil.rmtree(root / "cp")
        shutil.rmtree(root / "staged")
        if ctx.profile:
            # An unmeasured run of its own: the sampler must not slow the measured one.
            store, files = store_with_catalogue("bench-copy-profile", archive, root / "staged")
            with ctx.profiler("P3-worker", worker_pid):
                job_run(store, files, timeout=600)
            summary = summarise_file(ctx.profile_path("P3-worker"))
            ctx.profiles["P3 worker"] = summary
            print(format_summary("P3 worker staging the files", summary))
            shutil.rmtree(root / "staged")

        small_root = archive / "small"
        # An archive the service cannot write, as a real one: a file it could write is copied
        # instead of linked (a write to the staged copy would change the archive).
        read_only(small_root)
        link_store, link_files = store_with_catalogue(
            "bench-link", small_root, root / "linked", hard_link=True
        )
        ours_link_ms = job_run(link_store, link_files, timeout=600) / len(link_files) * 1000
        links_check(small_root, root / "linked", link_files)
        cp_link_ms = cp_seconds(small_root, root / "cp-linked", link=True) / len(link_files) * 1000
    finally:
        ctx.work_reset()
        shutil.rmtree(root, ignore_errors=True)
    mib = total / 1024**2
    return [
        Result(
            "P3",
            f"copy: stage {mib:,.0f} MiB in {count:,} files, 2 worker processes",
            "MB/s",
            ours_rate,
            cp_rate,
            "cp -r + sync of the copies, same disk",
            profile_below=PROFILE_BELOW,
            details={
                "files": count,
                "bytes": total,
                "large_files": sizes.copy_large_files,
                "large_mib": sizes.copy_large_mib,
                "small_files": sizes.copy_small_files,
                "small_kib": sizes.copy_small_kib,
            },
            note=(
                f"{sizes.copy_large_files}x{sizes.copy_large_mib} MiB + "
                f"{sizes.copy_small_files}x{sizes.copy_small_kib} KiB"
            ),
        ),
        Result(
            "P3",
            f"hard-link mode: per-file cost, {len(link_files):,} files",
            "ms/file",
            ours_link_ms,
            cp_link_ms,
            "cp -al of the same files",
            higher_is_better=False,
            details={"files": len(link_files)},
        ),
    ]
