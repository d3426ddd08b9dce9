"""Stores, archive trees and jobs for the benchmarks that stage for real (P2, P3, P5)."""

import os
import time
from pathlib import Path

from django.contrib.auth import get_user_model

from bench.context import jobs_wait
from bench.prepare import BENCH_USER
from staging.models import File, Store
from staging.services.catalogue import catalogue_scan
from staging.services.jobs import job_create_staging

BLOCK = 1024**2


def file_write(path: Path, size: int, block: bytes) -> None:
    """A file of ``size`` bytes from a random block, on disk before we go on (fsync)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        remaining = size
        while remaining:
            chunk = block[: min(len(block), remaining)]
            out.write(chunk)
            remaining -= len(chunk)
        out.flush()
        os.fsync(out.fileno())


def tiny_files_write(root: Path, count: int, *, size: int = 1024, prefix: str = "f") -> None:
    block = os.urandom(size)
    for i in range(count):
        file_write(root / f"d{i // 100:03d}" / f"{prefix}{i:05d}.dat", size, block)


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


def bench_owner():
    return get_user_model().objects.get(username=BENCH_USER)


def job_run(store: Store, files: list[File], *, timeout: float) -> float:
    """Submit one job for ``files`` and wait for it: seconds from submit to FINISHED."""
    started = time.time()
    job = job_create_staging(owner=bench_owner(), store=store, files=files, source="bench")
    return jobs_wait([job.pk], timeout=timeout) - started
