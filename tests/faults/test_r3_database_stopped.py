"""R3: PostgreSQL stopped for 15 s mid-run while eight DTS pollers keep asking: only 200 and 503
(with Retry-After) while it is away, never a 500, and every job ends intact after."""

import itertools
import os
import threading
import time
from collections import Counter

import pytest
import requests

from staging.roles import Role
from tests.workers import wait_until

pytestmark = pytest.mark.integration

POLLERS = 8
JOBS = 6
OUTAGE_SECONDS = 15
MAX_POLLING_SECONDS = 240


class Pollers:
    """Threads that poll GET /dts/staging?id= round the given requests, as the DTS does (only
    much faster), counting each answer by status code."""

    def __init__(self, web_url: str, headers: dict, request_ids: list[str]):
        self.urls = [f"{web_url}/dts/staging?id={rid}" for rid in request_ids]
        self.headers = headers
        self.codes: Counter = Counter()
        self.bad: list[str] = []
        self.last_ok = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll, args=(n,)) for n in range(POLLERS)]

    def _poll(self, offset: int) -> None:
        session = requests.Session()
        deadline = time.monotonic() + MAX_POLLING_SECONDS
        for url in itertools.islice(itertools.cycle(self.urls), offset, None):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            try:
                response = session.get(url, headers=self.headers, timeout=30)
                code = response.status_code
                if code == 503 and not response.headers.get("Retry-After"):
                    code = "503 without Retry-After"
            except requests.RequestException as exc:
                code = type(exc).__name__
            with self._lock:
                self.codes[code] += 1
                if code == 200:
                    self.last_ok = time.monotonic()
                elif code != 503 and len(self.bad) < 5:
                    self.bad.append(f"{code}: {getattr(response, 'text', '')[:300]}")
            time.sleep(0.02)

    def snapshot(self) -> Counter:
        with self._lock:
            return Counter(self.codes)

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def test_pollers_see_only_200_and_503_while_postgresql_is_stopped_and_every_job_ends(service):
    contents = {f"job{j}/f{n}.bin": os.urandom(65536 + n) for j in range(JOBS) for n in range(6)}
    ids = service.add_files(contents)
    service.slow_down(400)
    web = service.start_web()
    service.start_worker(concurrency=2)
    service.start_worker(concurrency=2)
    service.start_beat()
    dts = service.headers(Role.SERVICE_USER)
    request_ids = [service.submit(web, ids[j * 6 : j * 6 + 6]) for j in range(JOBS)]
    wait_until(lambda: service.items_finished() >= 4, timeout=60, what="progress")

    with Pollers(web.url, dts, request_ids) as pollers:
        time.sleep(1)
        before = pollers.snapshot()
        service.postgres.stop()
        time.sleep(OUTAGE_SECONDS)
        during = pollers.snapshot() - before
        service.postgres.start()
        back_at = time.monotonic()
        wait_until(lambda: pollers.last_ok > back_at, timeout=30, what="a 200 after the outage")
        first_ok = pollers.last_ok - back_at
        statuses = service.wait_for_jobs(request_ids, timeout=120)
        ended = time.monotonic() - back_at
    print(
        f"\nwhile away: {dict(during)}; overall {dict(pollers.codes)}; first 200 "
        f"{first_ok:.1f}s and every job ended {ended:.1f}s after PostgreSQL came back"
    )

    assert during[503] > 0
    assert set(pollers.codes) <= {200, 503}, pollers.bad
    assert set(statuses.values()) == {"FINISHED"}, statuses
    service.assert_staged_intact(contents)
    for request_id in request_ids:
        url = f"{web.url}/dts/staging?id={request_id}"
        assert requests.get(url, headers=dts, timeout=30).json() == {"status": "ready"}
