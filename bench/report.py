"""What a run leaves behind: the table on the terminal, bench/results/<stamp>.json, and a
Markdown section for bench/RESULTS.md with the machine's facts and the commit."""

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

from bench.harness import REPO_ROOT, Result

RESULTS_MD = REPO_ROOT / "bench" / "RESULTS.md"


def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _filesystem(path: Path) -> str:
    return _run(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", str(path)])


def machine_facts(*, temp_dir: Path) -> dict:
    """nproc, memory, service versions, commit: what a reader needs to compare two runs."""
    import django
    import redis
    from django.conf import settings
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    try:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=2)
        redis_version = client.info("server")["redis_version"]
    except redis.RedisError:
        redis_version = "unreachable"
    commit = _run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", "HEAD"])
    dirty = bool(_run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "."]))
    wrk = shutil.which("wrk")
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": _memory_gib(),
        "postgresql": postgres,
        "redis": redis_version,
        "python": platform.python_version(),
        "django": django.get_version(),
        "kernel": platform.release(),
        "filesystem": _filesystem(temp_dir),
        "wrk": _run([wrk, "--version"]).splitlines()[0] if wrk else "missing",
        "commit": commit + ("-dirty" if dirty else ""),
    }


def _number(value: float | None) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _ratio(result: Result) -> str:
    ratio = result.ratio
    if ratio is None:
        return "n/a"
    return f"{ratio:.2f}" + (" (!)" if result.needs_profile else "")


def table_rows(results: list[Result]) -> list[list[str]]:
    return [
        [
            r.benchmark,
            r.name,
            f"{_number(r.ours)} {r.metric}",
            f"{_number(r.baseline)} {r.metric}",
            _ratio(r),
            r.baseline_name,
        ]
        for r in results
    ]


HEADER = ["", "benchmark", "ours", "baseline", "ratio", "baseline is"]


def format_table(results: list[Result]) -> str:
    rows = [HEADER, *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {r.benchmark} {r.name}: {r.note}" for r in results if r.note]
    footer = [
        "ratio: ours against the baseline, above 1 is better than the baseline whichever way "
        "the metric runs; (!) marks a ratio far below 1 (profile it: --profile)"
    ]
    return "\n".join(lines + (["", *notes] if notes else []) + [""] + footer)


def results_document(
    *, stamp: str, mode: str, command: str, machine: dict, results: list[Result], extra: dict
) -> dict:
    return {
        "date": stamp,
        "mode": mode,
        "command": command,
        "machine": machine,
        "results": [r.as_dict() for r in results],
        **extra,
    }


def write_json(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def markdown_section(document: dict, results: list[Result]) -> str:
    m = document["machine"]
    lines = [
        f"## {document['date']} — {document['mode']} run",
        "",
        f"`{document['command']}` · commit `{m['commit']}` · nproc {m['nproc']} · "
        f"{m['memory_gib']} GiB RAM · PostgreSQL {m['postgresql']} · Redis {m['redis']} · "
        f"Python {m['python']} · Django {m['django']} · Linux {m['kernel']} · "
        f"disk {m['filesystem']}",
        "",
        "| | benchmark | ours | baseline | ratio | baseline is |",
        "|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results)]
    notes = [f"- {r.benchmark} {r.name}: {r.note}" for r in results if r.note]
    failures = document.get("failures") or {}
    notes += [f"- {key} failed: {message}" for key, message in failures.items()]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def record(section: str, path: Path = RESULTS_MD) -> None:
    """Append a run's section to the history in bench/RESULTS.md."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    path.write_text(text.rstrip("\n") + "\n\n" + section)
