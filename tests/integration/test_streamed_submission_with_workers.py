"""A staging request whose body is the files, over real HTTP to gunicorn as production runs it,
run by a real worker: an NDJSON body sent as a stream (read by the server as it comes), and
its refusals answered while the client is still sending."""

import json
import time
from pathlib import Path

import pytest
import requests

from staging.models import Item, Job
from staging.roles import Role
from staging.services.accounts import token_create
from tests.integration.stack import gunicorn_serving

pytestmark = pytest.mark.integration

NDJSON = "application/x-ndjson"


@pytest.fixture
def web(transactional_db, broker, tmp_path: Path, results_root: Path):
    with gunicorn_serving(tmp_path / "gunicorn.log", RESULTS_ROOT=str(results_root)) as base:
        yield base


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {token_create(username='streamer', role=Role.DATA_USER)}"}


def body_file(tmp_path: Path, lines: list[bytes]) -> Path:
    path = tmp_path / "body.ndjson"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def test_an_ndjson_body_streamed_to_gunicorn_is_staged_by_a_worker(
    web, store, archive_files, start_worker, tmp_path
):
    files = archive_files({f"run/{n}.bin": bytes([n]) * (1000 + n) for n in range(5)})
    start_worker(concurrency=2)
    path = body_file(tmp_path, [json.dumps(f.path).encode() for f in reversed(files)])

    with open(path, "rb") as body:  # a file is sent as it is read, with its Content-Length
        response = requests.post(
            f"{web}/api/v1/jobs/?by=paths&lifetime=P1D",
            data=body,
            headers={"Content-Type": NDJSON, **auth()},
            timeout=60,
        )

    assert response.status_code == 202, response.text
    status_url = response.headers["Location"]
    deadline = time.monotonic() + 90
    while (status := requests.get(status_url, headers=auth(), timeout=10).json())["status"] in (
        "NOT_STARTED",
        "RUNNING",
    ):
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    assert status["status"] == "FINISHED", status
    job = Job.objects.get(uuid=response.json()["jobId"])
    assert list(job.items.order_by("pk").values_list("path", flat=True)) == [
        f.path for f in reversed(files)
    ]
    for f in files:
        staged = Path(store.staging_root) / f.path
        assert staged.read_bytes() == (Path(store.archive_root) / f.path).read_bytes()


def test_a_bad_line_early_in_a_large_streamed_body_is_a_400_naming_it(
    web, store, archive_files, tmp_path
):
    (file,) = archive_files({"a.txt": b"alpha"})
    # Megabytes still to send when the server finds line 2 bad: the client reads the 400.
    lines = [json.dumps(file.id).encode(), b"{not json"] + [json.dumps(file.id).encode()] * 200_000
    path = body_file(tmp_path, lines)

    with open(path, "rb") as body:
        response = requests.post(
            f"{web}/api/v1/jobs/",
            data=body,
            headers={"Content-Type": NDJSON, **auth()},
            timeout=60,
        )

    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert "line 2" in response.json()["detail"]
    assert not Job.objects.exists()
    assert not Item.objects.exists()
