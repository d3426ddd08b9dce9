"""The open-loop generator of P9 against live servers: every scheduled request is sent (at the
rate, whatever the server does), answers that are not 2xx/3xx count as errors, and latency runs
from the scheduled send, so a slow server cannot hide behind a busy connection."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.openloop import OpenLoopProcess, paths_from, percentile, run_open_loop
from staging.models import JobStatus
from staging.roles import Role
from staging.services.accounts import token_create
from tests.factories import JobFactory, UserFactory

SLOW_ANSWER_SECONDS = 0.3


def ids_file_of(tmp_path: Path, jobs) -> Path:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("".join(f"{job.pk} {job.uuid}\n" for job in jobs))
    return ids_file


def test_it_polls_the_dts_status_of_jobs_picked_from_the_ids_file_at_the_rate(
    live_server, transactional_db, tmp_path: Path
):
    token = token_create(username="poller", role=Role.DATA_USER)
    owner = UserFactory(username="poller")
    jobs = JobFactory.create_batch(3, owner=owner, status=JobStatus.FINISHED)

    report = run_open_loop(
        base_url=live_server.url,
        path_template="/dts/staging?id={uuid}",
        ids_file=ids_file_of(tmp_path, jobs),
        token=token,
        rate=20,
        seconds=1,
    )

    assert report.requests == 20  # rate x seconds, each one sent
    assert report.errors == 0  # every answer was a 200: the ids and the token were right
    assert 0 < report.p50_ms <= report.p99_ms <= report.max_ms


def test_answers_that_are_not_2xx_or_3xx_are_errors(live_server, transactional_db, tmp_path):
    jobs = JobFactory.create_batch(1, status=JobStatus.FINISHED)
    report = run_open_loop(
        base_url=live_server.url,
        path_template="/dts/staging?id={uuid}",
        ids_file=ids_file_of(tmp_path, jobs),
        rate=10,
        seconds=1,
    )
    assert report.errors == report.requests == 10  # no token: every answer is a 401


class _SlowHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        threading.Event().wait(SLOW_ANSWER_SECONDS)
        body = b'{"status": "staging"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_slow_server_does_not_slow_the_sends_and_its_delay_is_in_every_latency(
    slow_server, tmp_path
):
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("1 a\n")

    report = run_open_loop(
        base_url=slow_server, path_template="/{uuid}", ids_file=ids_file, rate=20, seconds=1
    )

    assert (report.requests, report.errors) == (20, 0)
    # A closed loop on one connection would send 4 requests in a second; here each waited for
    # no answer before going, so several connections were open at once.
    assert report.connections > 1
    assert report.p50_ms >= SLOW_ANSWER_SECONDS * 1000


def test_without_a_duration_it_polls_until_stopped_and_reports_then(slow_server, tmp_path):
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("1 a\n")

    with OpenLoopProcess(
        base_url=slow_server, path_template="/{uuid}", ids_file=ids_file, rate=20
    ) as poll:
        threading.Event().wait(1.5)

    assert poll.report.requests > 0
    assert poll.report.errors == 0  # the requests in flight at the stop were answered too


def test_paths_fill_the_template_from_each_line(tmp_path):
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("1 u-1\n2 u-2\n\n")
    assert paths_from(ids_file, "/x/{pk}?id={uuid}") == ["/x/1?id=u-1", "/x/2?id=u-2"]


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile([], 0.5)) == (
        50.0,
        99.0,
        0.0,
    )
