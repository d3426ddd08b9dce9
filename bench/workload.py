"""Stores, archive trees and jobs for the benchmarks that stage for real (P2, P3, P5)."""

import os
import time
from pathlib import Path

from django.contrib.auth import get_user_model

from bench.context import jobs_wait
from bench.prepare import BENCH_USER
from staging.models import File, JobStatus, Store, SubJob
from staging.services.catalogue import catalogue_scan
from staging.services.jobs import job_create_staging

BLOCK = 1024**2


def file_write(path: Path, size: int, block: bytes, *, durable: bool = True) -> None:
    """A file of ``size`` bytes from a random block, on disk before we go on (fsync) unless
    not ``durable`` (thousands of tiny files that only their latency makes slow)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        remaining = size
        while remaining:
            chunk = block[: min(len(block), remaining)]
            out.write(chunk)
            remaining -= len(chunk)
        if durable:
            out.flush()
            os.fsync(out.fileno())


def tiny_files_write(
    root: Path, count: int, *, size: int = 1024, prefix: str = "f", durable: bool = True
) -> None:
    block = os.urandom(size)
    for i in range(count):
        path = root / f"d{i // 100:03d}" / f"{prefix}{i:05d}.dat"
        file_write(path, size, block, durable=durable)


def store_with_catalogue(
    slug: str, archive: Path, staging: Path, **options
) -> tuple[Store, list[File]]:
    """A store over ``archive`` (scanned into the catalogue) staging into ``staging``."""
    staging.mkdir(parents=True, exist_ok=True)
    store = Store.objects.create(
        slug=slug, archive_root=str(archive), staging_root=str(staging), **options
    )
    catalogue_scan(store=store)
    return store, list(File.objects.filter(store=store).order_by("path"))


def latency_store(
    slug: str, archive: Path, staging: Path, latency_ms: int, **options
) -> tuple[Store, list[File]]:
    """A tape-like store: each item costs ``latency_ms`` (simulated) plus our bookkeeping, and
    stages by hard link, so the shared disk's fsync times stay out of it (P3 measures those)."""
    return store_with_catalogue(
        slug, archive, staging, simulated_latency_ms=latency_ms, hard_link=True, **options
    )


def finished_subjob_spans(**filters) -> list[tuple[float, float, int]]:
    """(started, finished, files) in UNIX seconds of the finished sub-jobs ``filters`` select."""
    rows = SubJob.objects.filter(status=JobStatus.FINISHED, started_at__isnull=False, **filters)
    return [
        (started.timestamp(), finished.timestamp(), files)
        for started, finished, files in rows.values_list("started_at", "finished_at", "files_total")
    ]


def bench_owner():
    return get_user_model().objects.get(username=BENCH_USER)


def job_run(store: Store, files: list[File], *, timeout: float) -> float:
    """Submit one job for ``files`` and wait for it: seconds from submit to FINISHED."""
    started = time.time()
    job = job_create_staging(owner=bench_owner(), store=store, files=files, source="bench")
    return jobs_wait([job.pk], timeout=timeout) - started
