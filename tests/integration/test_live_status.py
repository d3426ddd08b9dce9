"""Long polling (Prefer: wait=N) and the per-job event stream, over real HTTP to gunicorn as
production runs it: a waiting call answers when the job changes (a row written by another
process, or a real worker finishing the job), a stream resumes with Last-Event-ID, others'
jobs are 404, and open streams never keep an ordinary request from being answered."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest
import requests
from django.contrib.auth import get_user_model
from django.utils import timezone

from staging.models import Job, JobStatus
from staging.roles import Role
from staging.services.accounts import token_create
from tests.api.helpers import make_job
from tests.integration.stack import gunicorn_serving

pytestmark = pytest.mark.integration

# Per web process (gunicorn_serving starts two): 2 ordinary threads and 4 waiting slots.
WEB_THREADS, LIVE_CONNECTIONS = 2, 4


@pytest.fixture
def web(transactional_db, broker, tmp_path: Path, results_root: Path):
    with gunicorn_serving(
        tmp_path / "gunicorn.log",
        RESULTS_ROOT=str(results_root),
        WEB_THREADS=str(WEB_THREADS),
        LIVE_CONNECTIONS=str(LIVE_CONNECTIONS),
        LIVE_KEEPALIVE_SECONDS="1",
    ) as base:
        yield base


def bearer(username: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_create(username=username, role=Role.DATA_USER)}"}


@pytest.fixture
def alice() -> dict[str, str]:
    return bearer("alice")


def job_of(username: str, **fields) -> Job:
    owner = get_user_model().objects.get(username=username)
    return make_job(owner=owner, status=JobStatus.RUNNING, **fields)


def job_update(job: Job, **fields) -> None:
    """What a worker does to the row, from this process (another one than the server)."""
    Job.objects.filter(pk=job.pk).update(updated_at=timezone.now(), **fields)


def peek_url(web: str, job: Job) -> str:
    return f"{web}/api/v1/task_status/{job.uuid}/peek"


def peek_again(web: str, job: Job, headers: dict, *, prefer: str):
    """Peek, then peek again with the ETag and ``prefer``: (the ETag, the second answer)."""
    etag = requests.get(peek_url(web, job), headers=headers, timeout=10).headers["ETag"]
    answer = requests.get(
        peek_url(web, job),
        headers={**headers, "If-None-Match": etag, "Prefer": prefer},
        timeout=30,
    )
    return etag, answer


def in_background(call, *args, **kwargs):
    """Run a request in a thread; returns (future, executor) — the request is on its way."""
    executor = ThreadPoolExecutor(max_workers=1)
    return executor.submit(call, *args, **kwargs), executor


def sse(response: requests.Response):
    """The events (dicts of their fields) and comments ({"comment": text}) of a stream."""
    event: dict[str, str] = {}
    for line in response.iter_lines(decode_unicode=True):
        if line == "":
            if event:
                yield event
                event = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")


def events_only(response: requests.Response):
    return (event for event in sse(response) if "data" in event)


def open_stream(web: str, job: Job, headers: dict, **extra) -> requests.Response:
    return requests.get(
        f"{web}/api/v1/jobs/{job.uuid}/events",
        headers={"Accept": "text/event-stream", **headers, **extra},
        stream=True,
        timeout=(5, 30),
    )


# --- long polling --------------------------------------------------------------------------


def test_a_long_poll_answers_as_soon_as_the_job_changes(web, alice):
    job = job_of("alice")
    first = requests.get(peek_url(web, job), headers=alice, timeout=10)
    waiting_headers = {**alice, "If-None-Match": first.headers["ETag"], "Prefer": "wait=600"}

    future, executor = in_background(
        requests.get, peek_url(web, job), headers=waiting_headers, timeout=120
    )
    with executor:
        # Answering 304 now would mean it did not wait; it must still be waiting.
        assert not _done_within(future, 1.0)
        job_update(job, status=JobStatus.FINISHED, files_done=1, bytes_done=100)
        answer = future.result(timeout=60)

    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "FINISHED"
    assert answer.headers["ETag"] != first.headers["ETag"]
    # wait=600 is more than the service grants: shortened to 60, not refused.
    assert answer.headers["Preference-Applied"] == "wait=60"


def test_a_long_poll_answers_304_once_the_wait_is_over_when_nothing_changed(web, alice):
    job = job_of("alice")
    etag, answer = peek_again(web, job, alice, prefer="respond-async, wait=1")

    assert answer.status_code == 304
    assert answer.headers["ETag"] == etag
    assert answer.headers["Preference-Applied"] == "wait=1"


def test_without_if_none_match_a_wait_preference_answers_at_once(web, alice):
    job = job_of("alice")

    answer = requests.get(peek_url(web, job), headers={**alice, "Prefer": "wait=60"}, timeout=5)

    assert answer.status_code == 200
    assert answer.json()["status"] == "RUNNING"
    assert "Preference-Applied" not in answer.headers


def test_a_malformed_wait_preference_is_ignored(web, alice):
    job = job_of("alice")
    _, answer = peek_again(web, job, alice, prefer="wait=soon")

    assert answer.status_code == 304
    assert "Preference-Applied" not in answer.headers


def test_task_status_and_the_dts_status_wait_for_the_change_too(web, alice):
    job = job_of("alice")
    calls = {
        "task_status": f"{web}/api/v1/task_status/{job.uuid}",
        "dts": f"{web}/dts/staging?id={job.uuid}",
    }
    etags = {
        name: requests.get(url, headers=alice, timeout=10).headers["ETag"]
        for name, url in calls.items()
    }

    with ThreadPoolExecutor(max_workers=2) as executor:
        futures = {
            name: executor.submit(
                requests.get,
                url,
                headers={**alice, "If-None-Match": etags[name], "Prefer": "wait=30"},
                timeout=60,
            )
            for name, url in calls.items()
        }
        assert not _done_within(futures["dts"], 1.0)
        # Progress alone changes task_status's answer, not the DTS's four words.
        job_update(job, bytes_done=50)
        assert futures["task_status"].result(timeout=30).json()["progress"]["bytes_done"] == 50
        assert not _done_within(futures["dts"], 1.0)
        job_update(job, status=JobStatus.FINISHED, files_done=1, bytes_done=100)
        dts = futures["dts"].result(timeout=30)

    assert dts.status_code == 200
    assert dts.json() == {"status": "ready"}
    assert dts.headers["Preference-Applied"] == "wait=30"


# --- event stream --------------------------------------------------------------------------


def test_the_event_stream_follows_a_job_staged_by_a_worker_to_its_end(
    web, alice, archive_files, start_worker
):
    archive_files({f"run/{n}.bin": bytes([n]) * 5000 for n in range(4)})
    start_worker(concurrency=2)
    submitted = requests.post(
        f"{web}/api/v1/jobs/",
        json={"paths": [f"run/{n}.bin" for n in range(4)]},
        headers=alice,
        timeout=30,
    )
    assert submitted.status_code == 202, submitted.text
    job = Job.objects.get(uuid=submitted.json()["jobId"])

    with open_stream(web, job, alice) as stream:
        assert stream.status_code == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        events = list(events_only(stream))  # the server closes the stream after the last one

    last = events[-1]
    assert last["event"] == "status"
    assert json.loads(last["data"])["status"] == "FINISHED"
    assert json.loads(last["data"])["progress"]["files_done"] == 4
    ids = [event["id"] for event in events]
    assert len(set(ids)) == len(ids), ids  # no state sent twice


def test_last_event_id_resumes_after_what_the_client_saw(web, alice):
    job = job_of("alice")
    with open_stream(web, job, alice) as stream:
        first = next(events_only(stream))
    assert first["event"] == "status"
    assert json.loads(first["data"])["status"] == "RUNNING"

    job_update(job, bytes_done=40)
    with open_stream(web, job, alice, **{"Last-Event-ID": first["id"]}) as stream:
        resumed = next(events_only(stream))
    # Not the state it saw again: the newer one, with a new id.
    assert resumed["id"] != first["id"]
    assert json.loads(resumed["data"])["progress"]["bytes_done"] == 40

    with open_stream(web, job, alice, **{"Last-Event-ID": resumed["id"]}) as stream:
        seen = sse(stream)
        # Nothing new: keepalive comments (every second here), no event.
        assert next(part for part in seen if "comment" in part or "data" in part) == {
            "comment": "keepalive"
        }
        job_update(job, status=JobStatus.FINISHED, files_done=1, bytes_done=100)
        rest = [event for event in seen if "data" in event]
    assert [(e["event"], json.loads(e["data"])["status"]) for e in rest] == [("status", "FINISHED")]

    # An EventSource reconnecting after the end is told to stop (204).
    again = open_stream(web, job, alice, **{"Last-Event-ID": rest[0]["id"]})
    assert again.status_code == 204


def test_others_jobs_are_404_on_the_stream_and_the_waiting_calls(web, alice):
    bearer("bob")
    bobs = job_of("bob")

    stream = open_stream(web, bobs, alice)
    assert stream.status_code == 404
    assert stream.headers["Content-Type"] == "application/problem+json"
    for url in (peek_url(web, bobs), f"{web}/dts/staging?id={bobs.uuid}"):
        answer = requests.get(
            url, headers={**alice, "If-None-Match": "*", "Prefer": "wait=30"}, timeout=10
        )
        assert answer.status_code == 404, url


def test_open_streams_beyond_every_thread_do_not_keep_an_ordinary_request_waiting(web, alice):
    job = job_of("alice")
    # More streams than both processes have threads (ordinary and waiting together).
    streams_wanted = 2 * (WEB_THREADS + LIVE_CONNECTIONS) + 4
    with ExitStack() as open_streams:
        answers = [
            open_streams.enter_context(open_stream(web, job, alice)) for _ in range(streams_wanted)
        ]
        statuses = sorted(answer.status_code for answer in answers)

        ordinary = requests.get(f"{web}/api/v1/jobs/{job.uuid}/", headers=alice, timeout=10)
        assert ordinary.status_code == 200
        assert ordinary.json()["status"] == "RUNNING"

    # Every stream was answered: open (at most the waiting slots), or refused for now.
    assert set(statuses) <= {200, 503}, statuses
    assert 1 <= statuses.count(200) <= 2 * LIVE_CONNECTIONS
    refused = next(a for a in answers if a.status_code == 503)
    assert refused.headers["Retry-After"].isdigit()


def _done_within(future, seconds: float) -> bool:
    try:
        future.result(timeout=seconds)
    except TimeoutError:
        return False
    return True


# --- limits: database connections, one user's share, a stream's lifetime --------------------


@pytest.fixture
def serve(transactional_db, broker, tmp_path: Path, results_root: Path):
    """Starts gunicorn with the given settings (besides those of ``web``); yields its URL."""
    with ExitStack() as servers:

        def start(**env: str) -> str:
            settings = {
                "RESULTS_ROOT": str(results_root),
                "WEB_THREADS": str(WEB_THREADS),
                "LIVE_CONNECTIONS": str(LIVE_CONNECTIONS),
                "LIVE_KEEPALIVE_SECONDS": "1",
                **env,
            }
            log = tmp_path / f"gunicorn-{len(servers._exit_callbacks)}.log"
            return servers.enter_context(gunicorn_serving(log, **settings))

        yield start


class ServerConnections:
    """The most database connections the servers held at once, sampled from pg_stat_activity
    (every client backend on the test database but this process's own) until ``stop``."""

    def __init__(self):
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid(), current_database()")
            self._own_pid, self._database = cursor.fetchone()
        self.most = 0
        self._stopped = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        from django.db import connection

        params = connection.get_connection_params()
        with psycopg.connect(**params, autocommit=True) as sampling:
            while not self._stopped.is_set():
                (count,) = sampling.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                    "AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
                    "AND pid <> %s",
                    [self._database, self._own_pid],
                ).fetchone()
                self.most = max(self.most, count)

    def stop(self) -> int:
        self._stopped.set()
        self._sampler.join(timeout=30)
        return self.most


def test_waiters_woken_at_once_share_the_ordinary_connections(serve):
    # One ordinary thread per process and room for many waiters: the waiters read on the
    # ordinary turn, so no more connections than turns plus the watcher, per process. The
    # connections are kept as in production (CONN_MAX_AGE), so none is counted twice while
    # it closes.
    web = serve(WEB_THREADS="1", LIVE_CONNECTIONS="16", STAGINGSVC_TEST_CONN_MAX_AGE="60")
    users = [f"waiter{n}" for n in range(12)]
    headers = {user: bearer(user) for user in users}
    jobs = {user: job_of(user) for user in users}
    polls = {}
    for user in users:
        etag = requests.get(peek_url(web, jobs[user]), headers=headers[user], timeout=10)
        polls[user] = {**headers[user], "If-None-Match": etag.headers["ETag"], "Prefer": "wait=60"}

    sampled = ServerConnections()
    with ThreadPoolExecutor(max_workers=len(users)) as executor:
        answers = [
            executor.submit(requests.get, peek_url(web, job), headers=polls[user], timeout=90)
            for user, job in jobs.items()
        ]
        assert not _done_within(answers[0], 1.0)
        Job.objects.filter(pk__in=[job.pk for job in jobs.values()]).update(
            updated_at=timezone.now(), status=JobStatus.FINISHED
        )
        statuses = [answer.result(timeout=90).status_code for answer in answers]
    most = sampled.stop()

    assert statuses == [200] * len(users)
    # 2 processes of 1 ordinary turn and 1 watcher each; each waiter used to open its own.
    assert most <= 2 * (1 + 1), most


def test_one_user_cannot_take_every_waiting_slot(serve, alice):
    web = serve(LIVE_CONNECTIONS_PER_USER="1")
    job, bob = job_of("alice"), bearer("bob")
    with ExitStack() as open_streams:
        # Two processes, one slot each for alice: the rest of hers are refused.
        answers = [open_streams.enter_context(open_stream(web, job, alice)) for _ in range(4)]
        statuses = [answer.status_code for answer in answers]
        bobs = open_streams.enter_context(open_stream(web, job_of("bob"), bob))

        assert 1 <= statuses.count(200) <= 2 and statuses.count(503) >= 2, statuses
        refused = next(answer for answer in answers if answer.status_code == 503)
        assert refused.headers["Retry-After"].isdigit()
        assert "LIVE_CONNECTIONS_PER_USER" in refused.json()["detail"]
        assert bobs.status_code == 200  # slots are left for the others


def test_a_long_poll_beyond_the_users_share_answers_at_once(serve, alice):
    # No waiting slot for anyone's calls: each answers as a plain conditional GET would.
    web = serve(LIVE_CONNECTIONS_PER_USER="0")
    job = job_of("alice")
    etag = requests.get(peek_url(web, job), headers=alice, timeout=10).headers["ETag"]

    answer = requests.get(
        peek_url(web, job),
        headers={**alice, "If-None-Match": etag, "Prefer": "wait=60"},
        timeout=20,  # far less than the wait asked for: it must not have waited
    )

    assert answer.status_code == 304
    assert "Preference-Applied" not in answer.headers


def test_a_stream_closed_for_its_age_resumes_with_last_event_id(serve, alice):
    web = serve(LIVE_STREAM_MAX_SECONDS="2")
    job = job_of("alice", files_done=1, bytes_done=10)

    with open_stream(web, job, alice) as first:
        first_events = list(events_only(first))  # ends by itself, the job still running
    assert [event["event"] for event in first_events] == ["status"]
    assert json.loads(first_events[0]["data"])["status"] == "RUNNING"

    with open_stream(web, job, alice, **{"Last-Event-ID": first_events[0]["id"]}) as resumed:
        assert resumed.status_code == 200
        job_update(job, files_done=2, bytes_done=20)
        resumed_events = list(events_only(resumed))

    # Nothing sent twice, nothing missed: the progress made after the reconnect only.
    assert [event["event"] for event in resumed_events] == ["progress"]
    assert json.loads(resumed_events[0]["data"])["progress"]["files_done"] == 2
