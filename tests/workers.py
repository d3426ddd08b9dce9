"""Real `celery worker` processes for the integration tier, and helpers to wait on the database."""

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from django.conf import settings
from django.db import connection

from staging.models import TERMINAL_STATUSES, Job

REPO_ROOT = Path(__file__).resolve().parent.parent


def worker_environment(**overrides: str) -> dict[str, str]:
    """Environment for a subprocess that must use the database and broker of this test run."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "CELERY_BROKER_URL"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="stagingsvc.settings.test",
        STAGINGSVC_TEST_DB_NAME=str(connection.settings_dict["NAME"]),
        STAGINGSVC_TEST_KEY_PREFIX=settings.BROKER_KEY_PREFIX,
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


class CeleryProcess:
    """A `celery` subprocess in its own process group; stopped (and reaped) by ``stop``."""

    ready_marker = ""

    def __init__(
        self,
        *,
        arguments: list[str],
        log_path: Path,
        env: dict[str, str],
        command_prefix: Sequence[str] = (),
    ):
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [*command_prefix, sys.executable, "-m", "celery", "-A", "stagingsvc", *arguments],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready_marker in self.log():
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"celery exited early:\n{self.log()}")
            time.sleep(0.2)
        raise TimeoutError(f"celery not ready after {timeout}s:\n{self.log()}")

    def child_pids(self) -> list[int]:
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []

    def stop(self, timeout: float = 30) -> None:
        if self.process.poll() is None:
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()


class WorkerProcess(CeleryProcess):
    ready_marker = "ready."

    def __init__(
        self,
        *,
        concurrency: int,
        queues: str,
        log_path: Path,
        env: dict[str, str],
        command_prefix: Sequence[str] = (),
        pool: str = "",
    ):
        self.name = f"test-{uuid.uuid4().hex[:8]}@%h"
        super().__init__(
            arguments=[
                "worker",
                "-Q",
                queues,
                "-c",
                str(concurrency),
                "-n",
                self.name,
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                *(["--pool", pool] if pool else []),
            ],
            log_path=log_path,
            env=env,
            command_prefix=command_prefix,
        )


class BeatProcess(CeleryProcess):
    ready_marker = "beat: Starting..."

    def __init__(self, *, log_path: Path, env: dict[str, str]):
        super().__init__(
            arguments=[
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(log_path.with_suffix(".schedule")),
                "--max-interval",
                "1",
            ],
            log_path=log_path,
            env=env,
        )


def wait_until(predicate: Callable[[], bool], *, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}")


def wait_for_job(job: Job, *, timeout: float = 90) -> Job:
    """Poll the database until the job is terminal (each poll a fresh read)."""
    wait_until(
        lambda: Job.objects.filter(pk=job.pk, status__in=TERMINAL_STATUSES).exists(),
        timeout=timeout,
        what=f"job {job.uuid} to finish",
    )
    job.refresh_from_db()
    return job
