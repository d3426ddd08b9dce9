"""The WLCG tape API end to end with the real grid client: Debian's gfal2 (http plugin, command
line tools and Python bindings) against a live server on loopback, real `celery worker`
processes staging on Redis and the test database.

gfal2 finds the tape endpoint as it does at any site: GET /.well-known/wlcg-tape-rest-api on the
scheme, host and port of the file's URL. Plain http on loopback is accepted (no TLS needed), and
BEARER_TOKEN in the environment is sent as ``Authorization: Bearer``.
"""

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

from staging.models import Item, Job, JobStatus, Pin
from staging.roles import Role
from staging.services.accounts import token_create
from staging.services.recovery import staged_copies_sweep
from tests.workers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

DEBIAN_PYTHON = "/usr/bin/python3"
CLIENT_SCRIPT = Path(__file__).with_name("gfal2_client.py")


def gfal2_missing() -> str:
    if shutil.which("gfal-bringonline") is None:
        return "gfal2-util-scripts is not installed"
    probe = subprocess.run(
        [DEBIAN_PYTHON, "-c", "import gfal2"], capture_output=True, timeout=60, check=False
    )
    return "python3-gfal2 is not installed" if probe.returncode else ""


@pytest.fixture(scope="module")
def gfal2_installed():
    """The client must be there in CI (.ci/run installs it); elsewhere its absence skips."""
    missing = gfal2_missing()
    if missing and settings.CI:
        pytest.fail(f"{missing}: CI installs gfal2 with apt in .ci/run")
    if missing:
        pytest.skip(f"{missing} (apt-get install gfal2-util-scripts python3-gfal2)")


@pytest.fixture
def grid_env(tmp_path):
    """An environment for gfal2 carrying alice's token, and nothing of the caller's identity."""
    token = token_create(username="alice", role=Role.DATA_USER)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("X509_", "BEARER_", "GFAL_"))
    }
    # The gfal scripts pick the first python on PATH that imports gfal2; say which one.
    env.update(HOME=str(home), BEARER_TOKEN=token, GFAL_PYTHONBIN=DEBIAN_PYTHON)
    return env


def run(args: list[str], env: dict) -> str:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=180, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{output}"
    return output


def bindings(operation: str, token: str, urls: list[str], env: dict) -> dict:
    output = run([DEBIAN_PYTHON, str(CLIENT_SCRIPT), operation, token or "-", *urls], env)
    return json.loads(output.strip().splitlines()[-1])


def write_archive(store, contents: dict[str, bytes]) -> None:
    for relative, data in contents.items():
        path = Path(store.archive_root) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_gfal2_command_line_tools_stage_poll_and_evict(
    live_server, store, start_worker, gfal2_installed, grid_env, tmp_path
):
    contents = {"run1/reads.fastq": os.urandom(300_000), "run1/notes.txt": b"ACGT\n"}
    write_archive(store, contents)  # not scanned: the tape API catalogues files by path
    urls = [f"{live_server.url}/primary/{relative}" for relative in contents]
    start_worker(concurrency=2)

    discovered = run(["gfal-xattr", urls[0], "taperestapi.uri"], grid_env).strip()
    assert discovered == f"{live_server.url}/tape/api/v1"
    assert "READY" in run(["gfal-archivepoll", urls[0]], grid_env)  # it is on "tape"
    assert run(["gfal-xattr", urls[0], "user.status"], grid_env).strip() == "NEARLINE"

    url_list = tmp_path / "urls.txt"
    url_list.write_text("\n".join(urls) + "\n")
    output = run(
        ["gfal-bringonline", "--polling-timeout", "120", "--from-file", str(url_list)], grid_env
    )

    for url in urls:
        assert f"{url} READY" in output, output
    for relative, data in contents.items():
        assert (Path(store.staging_root) / relative).read_bytes() == data
    job = Job.objects.get(source="tape")
    assert (job.owner.username, job.status) == ("alice", JobStatus.FINISHED)
    assert run(["gfal-xattr", urls[0], "user.status"], grid_env).strip() == "ONLINE_AND_NEARLINE"

    run(["gfal-evict", urls[0]], grid_env)  # no request id: gfal2 sends a placeholder

    assert Pin.objects.get(job=job, path="run1/reads.fastq").released_at is not None
    assert Pin.objects.get(job=job, path="run1/notes.txt").released_at is None
    staged_copies_sweep()
    assert not (Path(store.staging_root) / "run1/reads.fastq").exists()
    assert (Path(store.staging_root) / "run1/notes.txt").exists()
    assert run(["gfal-xattr", urls[0], "user.status"], grid_env).strip() == "NEARLINE"


def test_gfal2_python_bindings_bring_online_poll_abort_and_release(
    live_server, store, start_worker, gfal2_installed, grid_env
):
    contents = {"keep.dat": b"keep" * 1000, "drop.dat": b"drop" * 1000}
    write_archive(store, contents)
    keep, drop = (f"{live_server.url}//primary//{relative}" for relative in contents)

    # No worker yet: the request waits in the queue.
    created = bindings("bring_online", "", [keep, drop], grid_env)
    token = created["token"]
    assert created["errors"] == [None, None]
    job = Job.objects.get(uuid=token)
    waiting = bindings("bring_online_poll", token, [keep, drop], grid_env)["errors"]
    assert [e["code"] for e in waiting] == [errno.EAGAIN, errno.EAGAIN]  # "not yet on disk"

    aborted = bindings("abort_bring_online", token, [drop], grid_env)
    assert aborted["errors"] == [None]
    assert Item.objects.get(job=job, path="drop.dat").status == JobStatus.CANCELLED

    start_worker(concurrency=1)
    wait_until(lambda: Job.objects.get(pk=job.pk).is_terminal, timeout=90, what="the job")

    polled = bindings("bring_online_poll", token, [keep, drop], grid_env)["errors"]
    assert polled[0] is None  # on disk
    assert polled[1]["code"] != errno.EAGAIN and "CANCELLED" in polled[1]["message"]
    assert (Path(store.staging_root) / "keep.dat").read_bytes() == contents["keep.dat"]
    assert not (Path(store.staging_root) / "drop.dat").exists()

    released = bindings("release", token, [keep], grid_env)
    assert released["errors"] == [None]
    assert Pin.objects.get(job=job, path="keep.dat").released_at is not None
    staged_copies_sweep()
    assert not (Path(store.staging_root) / "keep.dat").exists()
