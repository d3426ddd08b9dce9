"""``python -m bench`` (``make bench``): run the benchmarks, print the table, write
bench/results/<stamp>.json. Every process the run starts is stopped when it ends, whatever way
it ends."""

import argparse
import importlib
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import FULL, QUICK, REPO_ROOT, SMALL_DB, Result, Supervisor

RESULTS_DIR = REPO_ROOT / "bench" / "results"
# In the order they run: those that need the web servers first (P9, the poll while staging, and
# W2, completion to the event stream, last of them: they also need the worker), then the worker
# ones (1 worker process before 2), then the dispatcher's (D1-D3), whose workers run with a
# dispatch setting of their own. A benchmark is a module's ``run`` or ``module:function``.
BENCHMARKS = {
    "P1": ("bench.status_poll", "status poll"),
    "P6": ("bench.admin_page", "admin"),
    "P8": ("bench.dts_search", "DTS search"),
    "W3": ("bench.live:open_streams_beside_polls", "open event streams beside the poll load"),
    "P4": ("bench.submission", "submission"),
    "P9": ("bench.latency", "latency while staging"),
    "W2": ("bench.live:completion_latency", "completion to event stream and long poll"),
    "P7": ("bench.million", "million-file request"),
    "P5": ("bench.scaling", "scaling"),
    "P2": ("bench.pipeline", "pipeline"),
    "P3": ("bench.copying", "copy"),
    "D1": ("bench.fairness", "fair share"),
    "D2": ("bench.store_limit", "store limit"),
    "D3": ("bench.broker_bound", "broker bounded"),
    "W1": ("bench.webhooks", "webhooks"),
    "P10": ("bench.tape_recall", "tape recall"),
}
NEEDS_WEB = {"P1", "P6", "P8", "W3", "P4", "P9", "W2"}


def _benchmark_function(runner: str):
    """``module`` (its ``run``) or ``module:function``: the function that runs a benchmark."""
    module_name, _, function = runner.partition(":")
    return getattr(importlib.import_module(module_name), function or "run")


def benchmark_list(text: str) -> list[str]:
    wanted = [part.strip().upper() for part in text.split(",") if part.strip()]
    unknown = [key for key in wanted if key not in BENCHMARKS]
    if unknown or not wanted:
        raise argparse.ArgumentTypeError(
            f"choose from {', '.join(BENCHMARKS)} (comma-separated); got {text!r}"
        )
    return [key for key in BENCHMARKS if key in wanted]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of stagingsvc, each beside its ceiling in the same run.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller sizes (100,000 seeded jobs unless more are there already), under 2 min",
    )
    parser.add_argument(
        "--only",
        type=benchmark_list,
        default=list(BENCHMARKS),
        metavar="P1,P2,…",
        help="run only these benchmarks",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also sample our processes with py-spy in extra, unmeasured runs",
    )
    parser.add_argument(
        "--record", action="store_true", help="append this run's figures to bench/RESULTS.md"
    )
    parser.add_argument(
        "--rows", type=int, default=None, help="seeded jobs in the large database (P1, P6)"
    )
    parser.add_argument(
        "--keep-temp", action="store_true", help="keep the temporary folder (process logs)"
    )
    return parser.parse_args(argv)


def _exit_on_signal(signum, _frame):
    # Turn SIGTERM/SIGHUP into an exception, so every `finally` (stopping the children) runs.
    raise SystemExit(128 + signum)


def _quietly(cleanup) -> None:
    """Clean up without hiding the error that got us here."""
    try:
        cleanup()
    except Exception as exc:
        print(f"cleanup {cleanup.__name__} failed: {exc}", file=sys.stderr)


def django_setup() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    # The run's own process works in the small database (see bench.context).
    os.environ["BENCH_DATABASE"] = SMALL_DB
    import logging

    import django

    django.setup()
    # The run's own process logs what the service logs (catalogue scans, ...): not for the table.
    logging.getLogger("staging").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    django_setup()
    from bench.context import BenchContext
    from bench.report import (
        format_table,
        machine_facts,
        markdown_section,
        record,
        results_document,
        write_json,
    )

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    command = os.environ.get("BENCH_COMMAND") or " ".join(["python -m bench", *(argv or [])])
    temp_dir = Path(tempfile.mkdtemp(prefix="stagingsvc-bench-"))
    (temp_dir / "logs").mkdir()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    failures: dict[str, str] = {}
    timings: dict[str, float] = {}
    started = time.monotonic()
    print(f"stagingsvc benchmarks, {sizes.label} run {stamp}; temporary files in {temp_dir}")
    try:
        with Supervisor(temp_dir / "logs") as supervisor:
            ctx = BenchContext(
                sizes=sizes,
                supervisor=supervisor,
                temp_dir=temp_dir,
                results_dir=RESULTS_DIR,
                stamp=stamp,
                profile=args.profile,
                large_jobs=args.rows,
            )
            try:
                ctx.database("small")  # the run's own database must be migrated first
                ctx.broker_flush()
                for position, key in enumerate(args.only):
                    runner, title = BENCHMARKS[key]
                    print(f"[{key}] {title} …", flush=True)
                    began = time.monotonic()
                    try:
                        results += _benchmark_function(runner)(ctx)
                    except Exception as exc:
                        failures[key] = f"{type(exc).__name__}: {exc}"
                        traceback.print_exc()
                        for name in list(supervisor.processes):
                            print(f"--- last lines of {name} ---\n{supervisor.tail(name, 10)}")
                    timings[key] = round(time.monotonic() - began, 1)
                    print(f"[{key}] done in {timings[key]}s", flush=True)
                    if not NEEDS_WEB & set(args.only[position + 1 :]):
                        ctx.stop_web()
                machine = machine_facts(temp_dir=temp_dir)
            finally:
                for cleanup in (ctx.stop_workers, ctx.stop_web, ctx.broker_flush, ctx.work_reset):
                    _quietly(cleanup)
    finally:
        if not args.keep_temp:
            shutil.rmtree(temp_dir, ignore_errors=True)

    document = results_document(
        stamp=stamp,
        mode=sizes.label,
        command=command,
        machine=machine,
        results=results,
        extra={
            "failures": failures,
            "seconds": round(time.monotonic() - started, 1),
            "seconds_per_benchmark": timings,
            "profiles": ctx.profiles,
        },
    )
    json_path = RESULTS_DIR / f"{stamp}.json"
    write_json(json_path, document)
    print()
    print(format_table(results))
    print(f"\n{len(results)} figures in {document['seconds']}s; written to {json_path}")
    section = markdown_section(document, results)
    (RESULTS_DIR / f"{stamp}.md").write_text(section)
    if args.record:
        record(section)
        print("appended to bench/RESULTS.md")
    for key, message in failures.items():
        print(f"{key} FAILED: {message}", file=sys.stderr)
    return 1 if failures else 0
