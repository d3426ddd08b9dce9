"""wrk with the status-poll script against a live server: per-request ids and the bearer token
reach the service, and the figures come back. Skipped where wrk is not installed (`make bench`
installs it)."""

import shutil
from pathlib import Path

import pytest

from bench.loadgen import run_wrk
from staging.models import JobStatus
from staging.roles import Role
from staging.services.accounts import token_create
from tests.factories import JobFactory, UserFactory

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")


def test_wrk_polls_the_dts_status_of_jobs_picked_from_the_ids_file(
    live_server, transactional_db, tmp_path: Path
):
    token = token_create(username="poller", role=Role.DATA_USER)
    owner = UserFactory(username="poller")
    jobs = JobFactory.create_batch(3, owner=owner, status=JobStatus.FINISHED)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("".join(f"{job.pk} {job.uuid}\n" for job in jobs))

    report = run_wrk(
        base_url=live_server.url,
        path_template="/dts/staging?id={uuid}",
        ids_file=ids_file,
        token=token,
        connections=2,
        threads=1,
        seconds=1,
    )

    assert report.requests > 0
    assert report.errors == 0  # every answer was a 200: the ids and the token were right


def test_wrk_counts_answers_that_are_not_200(live_server, transactional_db, tmp_path: Path):
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("1 8a3bdcf3-3b07-4bfb-9b4b-4a3f3c1e0d3e\n")
    report = run_wrk(
        base_url=live_server.url,
        path_template="/dts/staging?id={uuid}",
        ids_file=ids_file,
        connections=1,
        threads=1,
        seconds=1,
    )
    assert report.requests > 0
    assert report.errors == report.requests  # no token: every answer is a 401
