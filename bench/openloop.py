"""An open-loop load generator: requests at a fixed rate whatever the server does, each one's
latency measured from the moment it was *scheduled* to be sent, not from when a free
connection let it go. A server that stalls for a second therefore shows a second of latency on
every request due in that second (no coordinated omission, unlike closed-loop tools such as wrk
or `hey -q`, whose clients wait for an answer before the next request).

Keep-alive HTTP/1.1 connections are reused while idle; when every one is busy a new one opens
(up to ``max_connections``), so a slow answer never delays the next send. The lag of each send
behind its schedule is reported too: if the generator itself falls behind, it shows there.

Run as ``python -m bench.openloop --url … --path-template … --ids-file … --rate 200 [--seconds
10] [--token …]`` (without --seconds: until SIGTERM); it prints one ``BENCH-RESULT {json}`` line,
like poll.lua does for wrk."""

import argparse
import asyncio
import json
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.loadgen import RESULT_PREFIX

REPO_ROOT = Path(__file__).resolve().parent.parent

CONNECT_TIMEOUT = 5.0
ANSWER_TIMEOUT = 10.0


@dataclass(frozen=True)
class OpenLoopReport:
    rate: float
    seconds: float
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    send_lag_p99_ms: float
    connections: int

    def as_dict(self) -> dict:
        return {
            "rate": self.rate,
            "seconds": round(self.seconds, 3),
            "requests": self.requests,
            "errors": self.errors,
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "max_ms": round(self.max_ms, 2),
            "send_lag_p99_ms": round(self.send_lag_p99_ms, 2),
            "connections": self.connections,
        }


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (0.0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.reusable = True

    async def exchange(self, request: bytes) -> int:
        """Send one request, read its whole answer; returns the status code."""
        return await asyncio.wait_for(self._exchange(request), ANSWER_TIMEOUT)

    async def _exchange(self, request: bytes) -> int:
        self.writer.write(request)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ", 2)[:2]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        if "transfer-encoding" in headers:
            raise ValueError("chunked answers are not read by this generator")
        length = int(headers.get("content-length", "0"))
        if length:
            await self.reader.readexactly(length)
        self.reusable = version == "HTTP/1.1" and headers.get("connection") != "close"
        return int(status)

    def close(self) -> None:
        self.writer.close()


class OpenLoop:
    def __init__(
        self,
        *,
        base_url: str,
        paths: list[str],
        token: str = "",
        rate: float,
        seconds: float | None,
        max_connections: int = 512,
        seed: int = 7919,
    ):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.paths = paths
        self.rate, self.seconds = rate, seconds
        self.max_connections = max_connections
        self.random = random.Random(seed)
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self.header_tail = f"Host: {parts.netloc}\r\n{auth}Accept: application/json\r\n\r\n"
        self.idle: list[_Connection] = []
        self.opened = 0
        self.slots = asyncio.Semaphore(max_connections)
        self.latencies: list[float] = []
        self.send_lags: list[float] = []
        # Requests without an answer, and answers that are not 2xx or 3xx.
        self.errors = 0

    def _request(self) -> bytes:
        path = self.paths[self.random.randrange(len(self.paths))]
        return f"GET {path} HTTP/1.1\r\n{self.header_tail}".encode("latin-1")

    async def _open(self) -> _Connection:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT
        )
        self.opened += 1
        return _Connection(reader, writer)

    async def _one(self, scheduled: float, request: bytes) -> None:
        async with self.slots:
            connection = self.idle.pop() if self.idle else None
            self.send_lags.append(time.perf_counter() - scheduled)
            try:
                status = None
                if connection is not None:
                    try:
                        status = await connection.exchange(request)
                    except (ConnectionError, asyncio.IncompleteReadError):
                        # The server closed an idle keep-alive connection: a fresh one, and the
                        # time lost still counts (from the schedule).
                        connection.close()
                        connection = None
                if connection is None:
                    connection = await self._open()
                    status = await connection.exchange(request)
            except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError):
                self.errors += 1
                if connection is not None:
                    connection.close()
                return
            self.latencies.append(time.perf_counter() - scheduled)
            if not 200 <= status < 400:
                self.errors += 1
            if connection.reusable:
                self.idle.append(connection)
            else:
                connection.close()

    async def run(self) -> OpenLoopReport:
        """Send until ``seconds`` have been scheduled, or (``seconds`` None) until SIGTERM; the
        requests in flight then finish and count."""
        stop = asyncio.Event()
        if self.seconds is None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        total = None if self.seconds is None else int(self.rate * self.seconds)
        started = time.perf_counter()
        pending = set()
        sent = 0
        while not stop.is_set() and (total is None or sent < total):
            scheduled = started + sent / self.rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    break
                except TimeoutError:
                    pass
            task = asyncio.create_task(self._one(scheduled, self._request()))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
        if pending:
            await asyncio.wait(pending)
        elapsed = time.perf_counter() - started
        for connection in self.idle:
            connection.close()
        ms = [value * 1000 for value in self.latencies]
        return OpenLoopReport(
            rate=self.rate,
            seconds=elapsed,
            requests=sent,
            errors=self.errors,
            p50_ms=percentile(ms, 0.50),
            p99_ms=percentile(ms, 0.99),
            max_ms=max(ms, default=0.0),
            send_lag_p99_ms=percentile([lag * 1000 for lag in self.send_lags], 0.99),
            connections=self.opened,
        )


def paths_from(ids_file: Path, path_template: str) -> list[str]:
    """One path per line "<primary key> <uuid>" of ``ids_file``, {pk} and {uuid} filled in."""
    paths = []
    for line in ids_file.read_text().splitlines():
        pk, _, job_uuid = line.strip().partition(" ")
        if job_uuid:
            paths.append(path_template.replace("{pk}", pk).replace("{uuid}", job_uuid))
    if not paths:
        raise ValueError(f"no '<pk> <uuid>' lines in {ids_file}")
    return paths


def parse_output(output: str) -> OpenLoopReport:
    for line in output.splitlines():
        if line.startswith(RESULT_PREFIX):
            return OpenLoopReport(**json.loads(line[len(RESULT_PREFIX) :]))
    raise ValueError(f"no {RESULT_PREFIX.strip()} line in the generator's output:\n{output}")


def _command(base_url: str, path_template: str, ids_file: Path, rate: float, token: str):
    return [
        sys.executable,
        "-m",
        "bench.openloop",
        "--url",
        base_url,
        "--path-template",
        path_template,
        "--ids-file",
        str(ids_file),
        "--rate",
        str(rate),
        "--token",
        token,
    ]


def run_open_loop(
    *,
    base_url: str,
    path_template: str,
    ids_file: Path,
    rate: float,
    seconds: float,
    token: str = "",
) -> OpenLoopReport:
    """The generator for ``seconds`` in a process of its own (its pacing must not share a GIL
    with the caller's work); returns its report."""
    completed = subprocess.run(
        [*_command(base_url, path_template, ids_file, rate, token), "--seconds", str(seconds)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the open-loop generator failed: {completed.stderr[-2000:]}")
    return parse_output(completed.stdout)


class OpenLoopProcess:
    """``with OpenLoopProcess(...) as poll: <work>`` polls while the work runs; ``poll.report``
    is the generator's report once the block has ended (SIGTERM, then its in-flight requests
    finish)."""

    def __init__(
        self, *, base_url: str, path_template: str, ids_file: Path, rate: float, token: str = ""
    ):
        self.argv = _command(base_url, path_template, ids_file, rate, token)
        self.process: subprocess.Popen | None = None
        self.report: OpenLoopReport | None = None

    def __enter__(self) -> "OpenLoopProcess":
        self.process = subprocess.Popen(
            self.argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        self.process.send_signal(signal.SIGTERM)
        stdout, stderr = self.process.communicate(timeout=60)
        if exc_type is None:
            if self.process.returncode != 0:
                raise RuntimeError(f"the open-loop generator failed: {stderr[-2000:]}")
            self.report = parse_output(stdout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--path-template", required=True)
    parser.add_argument("--ids-file", type=Path, required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument(
        "--seconds", type=float, default=None, help="how long; without it, until SIGTERM"
    )
    parser.add_argument("--token", default="")
    args = parser.parse_args(argv)
    generator = OpenLoop(
        base_url=args.url,
        paths=paths_from(args.ids_file, args.path_template),
        token=args.token,
        rate=args.rate,
        seconds=args.seconds,
    )
    report = asyncio.run(generator.run())
    print(RESULT_PREFIX + json.dumps(report.as_dict()), flush=True)


if __name__ == "__main__":
    main()
