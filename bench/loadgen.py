"""The load generator of the status-poll benchmark: wrk (Debian's package) driven by poll.lua,
which picks a job id per request and reports in JSON."""

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_SCRIPT = Path(__file__).resolve().parent / "poll.lua"
RESULT_PREFIX = "BENCH-RESULT "


class LoadGeneratorMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class LoadReport:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    errors: int

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "requests_per_second": round(self.requests_per_second, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "mean_ms": round(self.mean_ms, 2),
            "errors": self.errors,
        }


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise LoadGeneratorMissing(
            "wrk is not installed: `make bench` installs it (apt-get install wrk)"
        )
    return path


def parse_wrk_output(output: str) -> LoadReport:
    """The figures from the JSON line that poll.lua's done() prints."""
    for line in output.splitlines():
        if line.startswith(RESULT_PREFIX):
            data = json.loads(line[len(RESULT_PREFIX) :])
            errors = sum(value for key, value in data.items() if key.startswith("errors_"))
            return LoadReport(
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                mean_ms=data["mean_us"] / 1000,
                errors=errors,
            )
    raise ValueError(f"no {RESULT_PREFIX.strip()} line in wrk's output:\n{output}")


def run_wrk(
    *,
    base_url: str,
    path_template: str,
    ids_file: Path,
    token: str = "",
    connections: int = 64,
    threads: int = 2,
    seconds: int = 10,
) -> LoadReport:
    env = {
        **os.environ,
        "BENCH_IDS_FILE": str(ids_file),
        "BENCH_PATH_TEMPLATE": path_template,
        "BENCH_TOKEN": token,
    }
    completed = subprocess.run(
        [
            wrk_path(),
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA_SCRIPT),
            base_url,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr}")
    return parse_wrk_output(completed.stdout)
