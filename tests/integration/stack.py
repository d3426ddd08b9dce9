"""Helpers of the tests that start the whole service as `make run` does: a free port, and
waiting for it to be ready."""

import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
