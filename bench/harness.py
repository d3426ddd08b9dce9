"""Plumbing of a benchmark run: sizes per mode, results, and the service processes (gunicorn,
celery workers) started as children of the run and always stopped with it."""

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BENCH_SETTINGS = "bench.settings"
# The two bench databases: one with a million jobs (status poll, admin at scale), one with a
# thousand (admin at small scale) where the other benchmarks also do their work.
# BENCH_DB_PREFIX (with BENCH_REDIS_URL on another Redis database) lets two runs on one
# machine keep out of each other's way.
_DB_PREFIX = os.environ.get("BENCH_DB_PREFIX", "stagingsvc_bench")
LARGE_DB = _DB_PREFIX
SMALL_DB = f"{_DB_PREFIX}_small"


@dataclass(frozen=True)
class Sizes:
    """How big each benchmark is; ``QUICK`` keeps a whole run under two minutes."""

    label: str
    large_jobs: int
    small_jobs: int
    poll_ids: int
    poll_seconds: int
    poll_warmup_seconds: int
    poll_rounds: int
    poll_connections: int
    admin_renders: int
    submit_files: int
    submit_repeats: int
    pipeline_jobs: int
    pipeline_noops: int
    copy_large_files: int
    copy_large_mib: int
    copy_small_files: int
    copy_small_kib: int
    scaling_items: int
    scaling_latency_ms: int
    search_files: int
    search_repeats: int
    latency_rate: int
    latency_jobs: int
    million_files: int
    fairness_big_files: int
    fairness_latency_ms: int
    limit_files: int
    limit_latency_ms: int
    broker_pending_subjobs: int
    broker_seconds: int
    webhook_jobs: int


FULL = Sizes(
    label="full",
    large_jobs=1_000_000,
    small_jobs=1_000,
    poll_ids=10_000,
    poll_seconds=10,
    poll_warmup_seconds=2,
    poll_rounds=2,
    poll_connections=64,
    admin_renders=10,
    submit_files=10_000,
    submit_repeats=3,
    pipeline_jobs=300,
    pipeline_noops=1_000,
    copy_large_files=4,
    copy_large_mib=192,
    copy_small_files=1_024,
    copy_small_kib=256,
    scaling_items=400,
    scaling_latency_ms=25,
    search_files=1_000_000,
    search_repeats=20,
    latency_rate=200,
    latency_jobs=2,
    million_files=1_000_000,
    fairness_big_files=20_000,
    fairness_latency_ms=25,
    limit_files=2_000,
    limit_latency_ms=10,
    broker_pending_subjobs=100_000,
    broker_seconds=20,
    webhook_jobs=200,
)

QUICK = Sizes(
    label="quick",
    large_jobs=100_000,
    small_jobs=1_000,
    poll_ids=2_000,
    poll_seconds=4,
    poll_warmup_seconds=1,
    poll_rounds=1,
    poll_connections=64,
    admin_renders=3,
    submit_files=10_000,
    submit_repeats=1,
    pipeline_jobs=60,
    pipeline_noops=200,
    copy_large_files=2,
    copy_large_mib=96,
    copy_small_files=256,
    copy_small_kib=256,
    scaling_items=200,
    scaling_latency_ms=20,
    search_files=10_000,
    search_repeats=5,
    latency_rate=200,
    latency_jobs=1,
    million_files=100_000,
    fairness_big_files=2_000,
    fairness_latency_ms=25,
    limit_files=600,
    limit_latency_ms=10,
    broker_pending_subjobs=10_000,
    broker_seconds=8,
    webhook_jobs=50,
)


@dataclass
class Result:
    """One line of the table: our figure beside its baseline's, and their ratio (above 1 means
    ours is better, whichever way the metric runs)."""

    benchmark: str
    name: str
    metric: str
    ours: float | None
    baseline: float | None
    baseline_name: str
    higher_is_better: bool = True
    # A ratio under this is "far from 1": the run suggests profiling it.
    profile_below: float | None = None
    details: dict = field(default_factory=dict)
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.ours or not self.baseline:
            return None
        return self.ours / self.baseline if self.higher_is_better else self.baseline / self.ours

    @property
    def needs_profile(self) -> bool:
        ratio = self.ratio
        return ratio is not None and self.profile_below is not None and ratio < self.profile_below

    def as_dict(self) -> dict:
        return {
            "benchmark": self.benchmark,
            "name": self.name,
            "metric": self.metric,
            "ours": self.ours,
            "baseline": self.baseline,
            "baseline_name": self.baseline_name,
            "ratio": self.ratio,
            "higher_is_better": self.higher_is_better,
            "profile_below": self.profile_below,
            "details": self.details,
            "note": self.note,
        }


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(database: str, **extra: str) -> dict[str, str]:
    """Environment of a service process (web, worker, helper) on one bench database."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE=BENCH_SETTINGS,
        BENCH_DATABASE=database,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str, every=0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _die_with_parent() -> None:
    """Runs in the child before exec: if the run itself is killed outright (SIGKILL, no chance
    to clean up), the kernel still sends its children SIGTERM."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class Supervisor:
    """Child processes of the run, each in its own session so that stopping one stops its
    whole tree (gunicorn and celery fork workers). ``stop_all`` runs on every exit path."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, object] = {}

    def __enter__(self) -> "Supervisor":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop_all()

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        if name in self.processes:
            raise RuntimeError(f"{name} is already running")
        log = open(self.log_path(name), "ab")  # noqa: SIM115 - closed in stop()
        process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self.processes[name], self._logs[name] = process, log
        return process

    def running(self, name: str) -> bool:
        return name in self.processes and self.processes[name].poll() is None

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def log(self, name: str) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def tail(self, name: str, lines: int = 30) -> str:
        return "\n".join(self.log(name).splitlines()[-lines:])

    def stop(self, name: str, timeout: float = 20) -> None:
        process = self.processes.pop(name, None)
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            except ProcessLookupError:
                pass
        log = self._logs.pop(name, None)
        if log is not None:
            log.close()

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)

    def check_alive(self, name: str) -> None:
        if not self.running(name):
            raise RuntimeError(f"{name} exited early:\n{self.tail(name)}")

    def start_web(self, name: str, database: str, **extra_env: str) -> str:
        """gunicorn with the service's own configuration file, on a free loopback port (and
        ``extra_env`` in its environment); returns its base URL once /healthz answers."""
        port = free_port()
        self.start(
            name,
            [PYTHON, "-m", "gunicorn", "-c", "stagingsvc/gunicorn.conf.py", "stagingsvc.wsgi"],
            service_env(database, HOST="127.0.0.1", PORT=str(port), **extra_env),
        )
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            self.check_alive(name)
            try:
                return requests.get(f"{url}/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(healthy, timeout=60, what=f"{name} to answer on {url}")
        return url

    def start_worker(
        self,
        name: str,
        database: str,
        *,
        concurrency: int,
        queues: str = "staging,control,webhooks",
        **extra_env: str,
    ) -> None:
        """A `celery worker` with ``concurrency`` processes on both queues, as the Procfile
        runs it (and ``extra_env`` in its environment); returns once it is ready."""
        self.start(
            name,
            [
                PYTHON,
                "-m",
                "celery",
                "-A",
                "stagingsvc",
                "worker",
                "-Q",
                queues,
                "-c",
                str(concurrency),
                "-n",
                f"{name}-{uuid.uuid4().hex[:6]}@%h",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
            ],
            service_env(database, **extra_env),
        )

        def ready() -> bool:
            self.check_alive(name)
            return "ready." in self.log(name)

        wait_until(ready, timeout=60, what=f"{name} to be ready")
