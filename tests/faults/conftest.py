"""Fixtures of the fault suite: the service under test (web, workers, beat) on a Redis and a
PostgreSQL that the suite starts itself and may kill, stop and restart at will.

Outside CI a machine without the binaries skips the suite; under CI=true it fails instead."""

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import requests

from staging.models import File
from staging.roles import Role
from tests.faults.servers import (
    Gunicorn,
    IsolatedHost,
    OwnPostgres,
    OwnRedis,
    missing_tools,
    service_environment,
    started,
)
from tests.integration.stack import manage
from tests.workers import BeatProcess, CeleryProcess, WorkerProcess

STORE = "primary"


def cannot_run(message: str) -> None:
    """Skip on a developer's machine that lacks what a fault test needs; fail under CI."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{message}; CI never skips it", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def fault_tools() -> None:
    missing = missing_tools()
    if missing:
        cannot_run(f"the fault suite needs {', '.join(missing)}")


@pytest.fixture
def isolated_host(fault_tools):
    """A worker host in its own network namespace (needs root and iproute2's ``ip``)."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        cannot_run("an isolated worker host needs root and the ip command (iproute2)")
    host = IsolatedHost()
    yield host
    host.close()


@dataclass
class StagingService:
    """One deployment of the service on the suite's own servers, seen from outside: HTTP,
    files on disk, and rows read over a plain database connection."""

    root: Path
    postgres: OwnPostgres
    redis: OwnRedis
    processes: list = field(default_factory=list)
    webs: list = field(default_factory=list)
    tokens: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.archive = self.root / "archive"
        self.staging = self.root / "staging"
        self.var = self.root / "var"
        for directory in (self.archive, self.staging, self.var):
            directory.mkdir(parents=True)

    def env(self, host: str = "127.0.0.1", **overrides: str) -> dict[str, str]:
        return service_environment(
            database_url=self.postgres.url(host=host),
            broker_url=self.redis.url(host=host),
            var_dir=self.var,
            **overrides,
        )

    def manage(self, *arguments: str) -> str:
        return manage(self.env(), *arguments)

    def token(self, role: str = Role.DATA_USER, username: str = "") -> str:
        return self.manage("createtoken", username or f"{role}-user", "--role", role)

    def headers(self, role: str = Role.DATA_USER) -> dict[str, str]:
        """One token per role, made on first use (each is a management command)."""
        if role not in self.tokens:
            self.tokens[role] = self.token(role)
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def add_files(self, contents: dict[str, bytes]) -> list[str]:
        """Write files into the archive and catalogue them; returns their DTS ids in order."""
        for relative, data in contents.items():
            path = self.archive / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        self.manage("scan", "--store", STORE)
        return [File.id_for(STORE, relative) for relative in contents]

    def slow_down(self, latency_ms: int) -> None:
        """Make each file take at least this long, so a fault lands mid-job."""
        self.execute("UPDATE staging_store SET simulated_latency_ms = %s", latency_ms)

    def start_worker(
        self,
        *,
        concurrency: int = 2,
        queues: str = "staging,control,webhooks",
        on: IsolatedHost | None = None,
        **env: str,
    ) -> WorkerProcess:
        """A worker on this machine, or ``on`` an isolated host (reaching the servers over its
        link)."""
        worker = WorkerProcess(
            concurrency=concurrency,
            queues=queues,
            log_path=self.root / f"worker-{len(self.processes)}.log",
            env=self.env(host=on.host_address, **env) if on else self.env(**env),
            command_prefix=on.command_prefix if on else (),
        )
        self.processes.append(worker)
        worker.wait_ready()
        return worker

    def start_beat(self, **env: str) -> BeatProcess:
        log_path = self.root / f"beat-{len(self.processes)}.log"
        beat = BeatProcess(log_path=log_path, env=self.env(**env))
        self.processes.append(beat)
        beat.wait_ready()
        return beat

    def start_web(self, **env: str) -> Gunicorn:
        web = Gunicorn(self.env(**env), self.root / f"web-{len(self.webs)}.log")
        self.webs.append(web)
        return web

    def query(self, sql: str, *params) -> list[tuple]:
        with psycopg.connect(self.postgres.url(), connect_timeout=5) as connection:
            return connection.execute(sql, params).fetchall()

    def execute(self, sql: str, *params) -> None:
        with psycopg.connect(self.postgres.url(), connect_timeout=5) as connection:
            connection.execute(sql, params)

    def submit(self, web: Gunicorn, ids: list[str]) -> str:
        """A DTS staging request for ``ids``; returns its request id."""
        response = requests.post(
            f"{web.url}/dts/staging",
            json={"ids": ids},
            headers=self.headers(Role.SERVICE_USER),
            timeout=30,
        )
        assert response.status_code == 201, response.text
        return response.json()["request_id"]

    def items_finished(self, request_id: str | None = None) -> int:
        """Files staged so far, of one request or of all."""
        sql = "SELECT count(*) FROM staging_item i JOIN staging_job j ON j.id = i.job_id "
        sql += "WHERE i.status = 'FINISHED' AND (%s::uuid IS NULL OR j.uuid = %s::uuid)"
        return self.query(sql, request_id, request_id)[0][0]

    def job_statuses(self) -> dict[str, str]:
        return {
            str(uuid): status for uuid, status in self.query("SELECT uuid, status FROM staging_job")
        }

    def wait_for_jobs(self, uuids, *, timeout: float) -> dict[str, str]:
        """Wait until every job is terminal; returns their statuses."""
        wanted = {str(u) for u in uuids}
        deadline = time.monotonic() + timeout
        while True:
            statuses = {u: s for u, s in self.job_statuses().items() if u in wanted}
            if all(s in TERMINAL for s in statuses.values()) and len(statuses) == len(wanted):
                return statuses
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs still active after {timeout}s: {statuses}")
            time.sleep(0.5)

    def assert_staged_intact(self, relatives) -> None:
        """Every staged copy byte-identical to its archive file, and no temporary left."""
        for relative in relatives:
            staged = self.staging / relative
            assert staged.read_bytes() == (self.archive / relative).read_bytes(), relative
        assert list(self.staging.rglob(".stagingsvc-*")) == []

    def logs(self) -> str:
        parts = [p.log() for p in self.processes if isinstance(p, CeleryProcess)]
        parts += [w.log_path.read_text(errors="replace") for w in self.webs]
        return "\n".join(parts)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        for web in self.webs:
            web.stop()


TERMINAL = {"FINISHED", "FAILED", "PARTIALLY_FAILED", "CANCELLED"}


def prepare(service: StagingService) -> StagingService:
    service.postgres.create_database()
    service.manage("migrate", "--no-input")
    service.manage(
        "addstore",
        STORE,
        "--archive-root",
        str(service.archive),
        "--staging-root",
        str(service.staging),
        "--primary",
    )
    return service


@pytest.fixture
def own_redis(fault_tools, tmp_path: Path):
    redis = started(OwnRedis(tmp_path))
    yield redis
    redis.close()


@pytest.fixture
def own_postgres(fault_tools):
    postgres = started(OwnPostgres())
    yield postgres
    postgres.close()


@pytest.fixture
def service(own_postgres, own_redis, tmp_path: Path):
    """The service, migrated, with an empty primary store; start its processes with
    ``service.start_web()``, ``service.start_worker()``, ``service.start_beat()``."""
    deployed = prepare(StagingService(tmp_path / "service", own_postgres, own_redis))
    yield deployed
    deployed.stop()


def get(url: str, headers: dict | None = None, timeout: float = 10) -> requests.Response:
    return requests.get(url, headers=headers, timeout=timeout)
