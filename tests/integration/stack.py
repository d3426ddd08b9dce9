"""Helpers of the tests that start the whole service as `make run` does: a free port, and
waiting for it to be ready."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

# gunicorn as production starts it: its configuration file, run from the repository root.
GUNICORN = [
    sys.executable,
    "-m",
    "gunicorn",
    "-c",
    "stagingsvc/gunicorn.conf.py",
    "stagingsvc.wsgi",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def manage(env: dict[str, str], *arguments: str, timeout: float = 120) -> str:
    """Run a management command of the service under test; returns its output."""
    from tests.workers import REPO_ROOT

    done = subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(arguments)} failed:\n{done.stderr}")
    return done.stdout.strip()


def wait_until_ready(
    base: str, process: subprocess.Popen, log_path: Path, *, timeout: float = 60
) -> None:
    """Until ``base``/readyz answers 200; fails with the log if the process ends or time runs
    out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        if process.poll() is not None:
            pytest.fail(f"the service ended before it was ready:\n{log_path.read_text()}")
        time.sleep(0.5)
    pytest.fail(f"the service never became ready:\n{log_path.read_text()}")


@contextmanager
def gunicorn_serving(log_path: Path, **env: str) -> Iterator[str]:
    """gunicorn as production runs it (its configuration file, two worker processes unless
    ``WEB_CONCURRENCY`` says otherwise) on a free loopback port, on this test run's database and
    broker; yields its base URL once it is ready."""
    from tests.workers import REPO_ROOT, worker_environment

    port = free_port()
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            GUNICORN,
            cwd=REPO_ROOT,
            env=worker_environment(
                **{"HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "2", **env}
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, server, log_path)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
