"""The README as a newcomer follows it, on a fresh copy of the repository: `make run`, then the
walkthrough's commands exactly as written (a shell runs the README's block), then Ctrl-C, which
stops everything and exits 0."""

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.integration.stack import free_port, wait_until_ready

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.integration

# What a fresh clone's shell would not have: the test suite's own database, broker and roots.
NOT_INHERITED = {
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "DJANGO_SETTINGS_MODULE",
    "SECRET_KEY",
    "ARCHIVE_ROOT",
    "STAGING_ROOT",
    "RESULTS_ROOT",
    "STATIC_ROOT",
}


def fresh_clone(destination: Path) -> Path:
    """The repository's files as a clone has them (the working tree's content), beside the
    already-installed virtualenv."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in listed)):
        source = REPO_ROOT / name
        if source.is_file() and not source.is_symlink():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (destination / ".venv").symlink_to((REPO_ROOT / ".venv").resolve())
    # Copies are newer than the virtualenv's install stamp; without this, make would reinstall
    # requirements into the shared virtualenv, which a clone's first `make run` did long ago.
    for requirements in [*destination.glob("requirements*.txt"), destination / "constraints.txt"]:
        os.utime(requirements, (0, 0))
    return destination


def walkthrough(readme: str) -> str:
    section = readme.split("## Walkthrough", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    return fresh_clone(tmp_path / "stagingsvc")


def test_the_readme_walkthrough_runs_as_written_and_ctrl_c_stops_cleanly(clone, tmp_path):
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in NOT_INHERITED and not key.startswith(("STAGINGSVC_", "TEST_"))
    }
    env.update(PORT=str(port), WORKER_CONCURRENCY="1", PYTHONUNBUFFERED="1")
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "make-run.log"
    with open(log_path, "wb") as log:
        # Its own session, as a terminal's foreground job is: Ctrl-C signals the whole group.
        make_run = subprocess.Popen(
            ["make", "run"],
            cwd=clone,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_ready(base, make_run, log_path, timeout=120)
        banner = log_path.read_text()
        assert f"Start here   {base}/" in banner
        assert ".venv/bin/python manage.py createsuperuser" in banner
        assert requests.get(f"{base}/", timeout=5).status_code == 200

        # The README's port is the default one; this run listens on a free port instead.
        script = walkthrough((clone / "README.md").read_text()).replace(
            "127.0.0.1:8000", f"127.0.0.1:{port}"
        )
        ran = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ran.returncode == 0, f"{ran.stdout}\n{ran.stderr}\n{log_path.read_text()}"
        assert (
            "store primary: 1 file seen (1 new, 0 changed, 0 unchanged), 0 vanished, 1 MD5 computed"
            in ran.stdout
        )
        assert "reads.fastq" in ran.stdout  # ls -l var/staging/run1/
        assert (clone / "var" / "staging" / "run1" / "reads.fastq").read_bytes() == b"ACGT\n"
    finally:
        if make_run.poll() is None:
            os.killpg(make_run.pid, signal.SIGINT)  # what Ctrl-C sends
        try:
            code = make_run.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(make_run.pid, signal.SIGKILL)
            make_run.wait(timeout=10)
            raise
    output = log_path.read_text()
    # The recipe ends cleanly (exit 0, so make prints no "*** Error 130"); make itself got the
    # SIGINT too and, having nothing to report, re-raises it so the calling shell knows the
    # user interrupted: it ends by that signal, silently.
    assert code in (0, -signal.SIGINT), output
    assert "Error 130" not in output and "Interrupt" not in output, output
    assert "stagingsvc stopped." in output
