"""The zero-setup service as `make run` starts it (honcho + Procfile.embedded: gunicorn, a Celery
worker, beat and the embedded redis-server, on SQLite), driven over HTTP like the README
walkthrough, then stopped with SIGTERM leaving no process behind."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.integration.dts_client import dts_stage
from tests.integration.stack import free_port, manage, wait_until_ready

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.integration


def descendants(pid: int) -> set[int]:
    found, frontier = set(), [pid]
    while frontier:
        current = frontier.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            children = (task / "children").read_text().split() if task.exists() else []
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def embedded_env(tmp_path: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "SECRET_KEY"}
        and not key.startswith("STAGINGSVC_")
    }
    env.update(
        STAGINGSVC_VAR_DIR=str(tmp_path / "var"),
        PORT=str(free_port()),
        PATH=f"{BIN}:{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
        WORKER_CONCURRENCY="1",
    )
    return env


def test_the_embedded_stack_stages_files_and_stops_cleanly(embedded_env, tmp_path: Path):
    env = embedded_env
    base = f"http://127.0.0.1:{env['PORT']}"
    banner = manage(env, "bootstrap")
    assert f"{base}/dts/staging" in banner
    assert f"{base}/api/docs/" in banner
    log_path = tmp_path / "stack.log"
    with open(log_path, "wb") as log:
        stack = subprocess.Popen(
            [str(BIN / "honcho"), "--no-colour", "start", "-f", "Procfile.embedded"],
            cwd=REPO_ROOT,
            env={**env, "PORT": env["PORT"]},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_ready(base, stack, log_path)

        token = manage(env, "createtoken", "alice", "--role", "data-user").strip()
        archive = tmp_path / "var" / "archive"
        (archive / "run1").mkdir(parents=True)
        (archive / "run1" / "reads.fastq").write_bytes(b"@r1\nACGT\n+\nIIII\n" * 1000)
        assert "1 new" in manage(env, "scan")

        headers = {"Authorization": f"Bearer {token}"}
        listing = requests.get(f"{base}/api/v1/files/?prefix=run1/", headers=headers, timeout=5)
        file_id = listing.json()["results"][0]["id"]
        request_id, status_url = dts_stage(base, [file_id], headers)
        # Told rather than asking again: a long poll, answered when the job is ready (the
        # watcher polls SQLite here).
        first = requests.get(status_url, headers=headers, timeout=5)
        if first.json()["status"] == "staging":
            waiting = {**headers, "If-None-Match": first.headers["ETag"], "Prefer": "wait=60"}
            told = requests.get(status_url, headers=waiting, timeout=90)
            assert told.status_code == 200, log_path.read_text()
            assert told.headers["Preference-Applied"] == "wait=60"
        assert requests.get(status_url, headers=headers, timeout=5).json() == {"status": "ready"}
        events = requests.get(
            f"{base}/api/v1/jobs/{request_id}/events", headers=headers, timeout=10
        )
        assert events.headers["Content-Type"].startswith("text/event-stream")
        # A finished job's stream: its one status event, then the end.
        data = [line for line in events.text.splitlines() if line.startswith("data: ")]
        assert len(data) == 1, events.text
        assert json.loads(data[0].removeprefix("data: "))["status"] == "FINISHED"
        staged = tmp_path / "var" / "staging" / "run1" / "reads.fastq"
        assert staged.read_bytes() == (archive / "run1" / "reads.fastq").read_bytes()
        assert (tmp_path / "var" / "stagingsvc.sqlite3").exists()

        # The docs UI as `make run` serves it: its assets come from the collected static files.
        docs = requests.get(f"{base}/api/docs/", timeout=5)
        assert docs.status_code == 200
        bundle = re.search(r'src="(/static/[^"]+swagger-ui-bundle[^"]*\.js)"', docs.text)
        assert requests.get(f"{base}{bundle.group(1)}", timeout=5).status_code == 200
    finally:
        processes = descendants(stack.pid) | {stack.pid}
        stack.send_signal(signal.SIGTERM)
        try:
            stack.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)
            raise
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [pid for pid in processes if alive(pid)] == [], log_path.read_text()
    assert len(processes) >= 6  # honcho, gunicorn + workers, celery worker + child, beat, redis
