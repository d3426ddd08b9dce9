"""Shared fixtures: stores on real directories, API clients per role, real worker processes."""

from pathlib import Path

import pytest
import redis
from django.conf import settings
from rest_framework.test import APIClient

from staging.models import File, Store, StoreKind
from staging.roles import Role
from staging.services.accounts import token_create
from staging.services.catalogue import catalogue_scan
from staging.token_cache import token_cache
from tests.factories import store_with_roots
from tests.workers import BeatProcess, WorkerProcess, worker_environment


@pytest.fixture(autouse=True)
def results_root(settings, tmp_path: Path) -> Path:
    """Every test keeps job results files in its own directory (workers it starts too)."""
    settings.RESULTS_ROOT = tmp_path / "results"
    return settings.RESULTS_ROOT


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """The primary store, with empty archive and staging roots in a temporary directory."""
    return store_with_roots(tmp_path, slug="primary", is_primary=True)


@pytest.fixture
def tape_store(tmp_path: Path) -> Store:
    """A second store, of the posix-tape kind (restore-content is its own task)."""
    return store_with_roots(tmp_path, slug="tape", prefix="tape-", kind=StoreKind.POSIX_TAPE)


@pytest.fixture
def archive_files(store: Store):
    """Write files into the store's archive and scan them: ``archive_files({"a.txt": b"..."})``
    returns the catalogue entries in the order given."""

    def write(contents: dict[str, bytes], target: Store | None = None) -> list[File]:
        target = target or store
        for relative, data in contents.items():
            path = Path(target.archive_root) / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        catalogue_scan(store=target)
        by_path = {f.path: f for f in File.objects.filter(store=target)}
        return [by_path[relative] for relative in contents]

    return write


@pytest.fixture(autouse=True)
def forget_checked_tokens():
    """Each test starts as a freshly started web process: no token remembered."""
    token_cache.clear()
    yield
    token_cache.clear()


@pytest.fixture
def client_for(db):
    """``client_for(role, username=...)`` → an APIClient sending that user's bearer token."""

    def make(role: str = Role.DATA_USER, username: str | None = None) -> APIClient:
        token = token_create(username=username or f"{role}-user", role=role)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        client.token = token
        return client

    return make


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=2)


@pytest.fixture
def broker():
    """The test run's own corner of the real Redis broker, emptied before and after the test."""
    if not settings.REDIS_AVAILABLE:
        pytest.skip("Redis does not answer (set TEST_REDIS_URL); CI never skips this")
    client = _redis()

    def flush() -> None:
        keys = list(client.scan_iter(match=f"{settings.BROKER_KEY_PREFIX}*", count=1000))
        if keys:
            client.delete(*keys)

    flush()
    client.flush_test_keys = flush
    yield client
    flush()


@pytest.fixture
def start_worker(transactional_db, broker, tmp_path: Path, results_root: Path):
    """Start real `celery worker` processes: ``start_worker(concurrency=2)``, or with another
    pool as the Procfile runs it (``pool="threads"``). All are stopped at the end of the test;
    their logs are in the test's temporary directory."""
    started: list[WorkerProcess] = []

    def start(
        *,
        concurrency: int = 2,
        queues: str = "staging,control,webhooks",
        pool: str = "",
        **env: str,
    ) -> WorkerProcess:
        worker = WorkerProcess(
            concurrency=concurrency,
            queues=queues,
            pool=pool,
            log_path=tmp_path / f"worker-{len(started)}.log",
            env=worker_environment(RESULTS_ROOT=str(results_root), **env),
        )
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def start_beat(transactional_db, broker, tmp_path: Path):
    """Start a real `celery beat` (database scheduler) with the maintenance intervals given as
    environment variables, e.g. ``start_beat(REAPER_INTERVAL_SECONDS="1")``."""
    started: list[BeatProcess] = []

    def start(**env: str) -> BeatProcess:
        beat = BeatProcess(log_path=tmp_path / "beat.log", env=worker_environment(**env))
        started.append(beat)
        beat.wait_ready()
        return beat

    yield start
    for beat in started:
        beat.stop()


@pytest.fixture(autouse=True)
def store_roots_allowed(settings, tmp_path: Path) -> list[str]:
    """Stores a test adds (admin, addstore) may have their roots under its temporary
    directory."""
    settings.STORE_ROOTS_ALLOWED = [str(tmp_path)]
    return settings.STORE_ROOTS_ALLOWED
