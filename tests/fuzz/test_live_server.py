"""``make fuzz``: schemathesis over the OpenAPI schema against a live gunicorn server with a
real celery worker, on real PostgreSQL and Redis. Every phase runs (the schema's examples, the
coverage phase's edge values, random fuzzing, and stateful sequences that follow the links it
infers from responses and ``Location`` headers); no answer may be a 5xx.

Bounded by ``FUZZ_MAX_EXAMPLES`` (per operation and phase) and ``FUZZ_MAX_TIME`` (seconds for
the whole run). The server's own access log counts the requests it answered, by status. Throttles
are the test settings' (high): the point is every input, not the rate limits, which have their
own tests."""

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from staging.roles import Role
from staging.services.accounts import token_create
from tests.integration.stack import gunicorn_serving

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "10"))
MAX_TIME = int(os.environ.get("FUZZ_MAX_TIME", "60"))
# "GET /api/v1/jobs/ HTTP/1.1" 200 — the request line and status of gunicorn's access log.
ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) ')


@pytest.fixture
def gunicorn_server(transactional_db, start_worker, tmp_path: Path, results_root: Path):
    """gunicorn (two processes) on a free loopback port, on the test database."""
    log_path = tmp_path / "gunicorn.log"
    with gunicorn_serving(log_path, RESULTS_ROOT=str(results_root)) as base:
        yield SimpleNamespace(base_url=base, log_path=log_path)


@pytest.mark.timeout(MAX_TIME + 600)
def test_generated_requests_against_the_live_server_never_get_a_5xx(
    gunicorn_server, start_worker, archive_files, tmp_path
):
    start_worker(concurrency=1)
    # The files of the schema's request examples, so that examples reach the engine.
    archive_files({"a.txt": b"alpha", "run1/reads.fastq": b"@r1\nACGT\n"})
    token = token_create(username="fuzzer", role=Role.DATA_ADMIN)
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{gunicorn_server.base_url}/api/schema/?format=json",
        "--checks=not_a_server_error",
        "--phases=examples,coverage,fuzzing,stateful",
        f"--max-examples={MAX_EXAMPLES}",
        f"--max-time={MAX_TIME}",
        "--workers=2",
        "--seed=14",
        "--request-timeout=60",
        "--suppress-health-check=all",
        "--report=junit",
        f"--report-dir={tmp_path / 'report'}",
        f"--header=Authorization: Bearer {token}",
    ]
    run = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=MAX_TIME + 300
    )

    answered = [
        ACCESS_LINE.search(line)
        for line in gunicorn_server.log_path.read_text(errors="replace").splitlines()
    ]
    statuses = Counter(m["status"] for m in answered if m)
    server_errors = sorted(
        {f"{m['method']} {m['path'][:120]}" for m in answered if m and m["status"] >= "500"}
    )
    summary = (
        f"{sum(statuses.values())} requests answered by the live server; by status: "
        f"{dict(sorted(statuses.items()))}"
    )
    print(summary)
    print(run.stdout[-6000:])
    assert server_errors == [], f"{summary}\n{server_errors[:50]}\n{run.stdout[-20000:]}"
    assert run.returncode == 0, f"{summary}\n{run.stdout[-20000:]}\n{run.stderr[-4000:]}"
    assert sum(statuses.values()) >= 100, summary
