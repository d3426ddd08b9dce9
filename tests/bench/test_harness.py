"""The benchmark harness's plumbing on tiny sizes: arguments, wrk's report, ratios, the table,
profiles, process supervision, seeding. No figure is checked: timing belongs to `make bench`."""

import importlib
import json
import sys
from pathlib import Path

import pytest

from bench.cli import BENCHMARKS, parse_args
from bench.harness import FULL, QUICK, Result, Supervisor, free_port
from bench.loadgen import parse_wrk_output
from bench.profiling import summarise_collapsed
from bench.report import format_table, markdown_section, record


def test_it_runs_every_benchmark_in_full_mode_by_default():
    args = parse_args([])
    assert args.only == list(BENCHMARKS)
    assert not args.quick
    assert not args.profile


def test_quick_mode_and_a_subset_can_be_chosen_in_any_case():
    args = parse_args(["--quick", "--only", "p3,P1"])
    assert args.quick
    assert args.only == ["P1", "P3"]  # in the run's own order


def test_it_rejects_unknown_benchmarks(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--only", "P99"])
    assert "choose from" in capsys.readouterr().err


def test_quick_sizes_are_smaller_than_full_ones():
    assert QUICK.large_jobs < FULL.large_jobs == 1_000_000
    assert QUICK.poll_seconds * QUICK.poll_rounds < FULL.poll_seconds * FULL.poll_rounds
    assert FULL.poll_connections == QUICK.poll_connections == 64
    assert FULL.submit_files == 10_000


def test_it_reads_the_figures_that_the_lua_script_prints():
    output = (
        "Running 1s test\n"
        + "BENCH-RESULT "
        + json.dumps(
            {
                "requests": 1500,
                "duration_us": 3_000_000,
                "p50_us": 2500,
                "p99_us": 9000,
                "mean_us": 3000.5,
                "errors_connect": 0,
                "errors_read": 1,
                "errors_write": 0,
                "errors_status": 2,
                "errors_timeout": 0,
            }
        )
    )
    report = parse_wrk_output(output)
    assert report.requests_per_second == 500
    assert (report.p50_ms, report.p99_ms, report.errors) == (2.5, 9.0, 3)


def test_it_refuses_wrk_output_without_the_figures():
    with pytest.raises(ValueError, match="BENCH-RESULT"):
        parse_wrk_output("wrk: connection refused")


def test_a_ratio_above_one_means_better_than_the_baseline_either_way():
    faster = Result("P1", "poll", "requests/s", 200, 100, "bare view", profile_below=0.9)
    slower_page = Result("P6", "admin", "ms", 50, 25, "small", higher_is_better=False)
    assert faster.ratio == 2.0 and not faster.needs_profile
    assert slower_page.ratio == 0.5
    assert Result("P1", "peek", "requests/s", None, 100, "bare view").ratio is None


def test_a_ratio_far_below_one_is_flagged_for_profiling():
    result = Result("P2", "pipeline", "jobs/s", 10, 100, "no-op", profile_below=0.5)
    assert result.needs_profile
    assert "0.10 (!)" in format_table([result])


def test_the_table_and_the_markdown_show_every_figure_and_n_a():
    results = [
        Result("P1", "status poll dts", "requests/s", 321.0, 642.0, "bare view", note="3 q"),
        Result("P1", "status poll peek", "requests/s", None, 642.0, "bare view", note="n/a"),
    ]
    table = format_table(results)
    assert "321 requests/s" in table and "0.50" in table and "n/a" in table
    document = {
        "date": "2026-01-01T000000Z",
        "mode": "quick",
        "command": "make bench ARGS=--quick",
        "machine": {
            "commit": "abc",
            "nproc": 2,
            "memory_gib": 24,
            "postgresql": "15",
            "redis": "7",
            "python": "3.11",
            "django": "5.2",
            "kernel": "6",
            "filesystem": "ext4",
        },
        "failures": {"P3": "boom"},
    }
    section = markdown_section(document, results)
    assert "| P1 | status poll dts | 321 requests/s | 642 requests/s | 0.50 |" in section
    assert "P3 failed: boom" in section


def test_recording_appends_a_section_to_the_history(tmp_path: Path):
    history = tmp_path / "RESULTS.md"
    record("## first\n", history)
    record("## second\n", history)
    text = history.read_text()
    assert text.startswith("# Benchmark results")
    assert text.index("## first") < text.index("## second")


def test_a_profile_is_summed_per_function_and_our_code_is_found():
    collapsed = "\n".join(
        [
            'process 1:"gunicorn";handle (gunicorn/workers/gthread.py:1);'
            "get (staging/api/dts.py:70);wait (psycopg/connection.py:479) 30",
            'process 1:"gunicorn";handle (gunicorn/workers/gthread.py:1);'
            "select (selectors.py:451) 10",
        ]
    )
    summary = summarise_collapsed(collapsed)
    assert summary["samples"] == 40
    assert summary["our_code_percent"] == 75.0
    assert summary["self"][0] == ("wait (psycopg/connection.py:479)", 75.0)
    assert summary["ours"] == [("get (staging/api/dts.py:70)", 75.0)]


def test_the_supervisor_stops_every_child_even_when_the_run_fails(tmp_path: Path):
    with pytest.raises(RuntimeError), Supervisor(tmp_path) as supervisor:
        process = supervisor.start(
            "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], env={}
        )
        assert supervisor.running("sleeper")
        raise RuntimeError("a benchmark failed")
    assert process.poll() is not None
    assert not supervisor.processes


def test_free_ports_are_on_loopback_and_unused():
    port = free_port()
    assert 1024 < port < 65536


def test_bench_settings_use_their_own_database_and_broker_prefix():
    bench_settings = importlib.import_module("bench.settings")
    assert bench_settings.DATABASES["default"]["NAME"].startswith("stagingsvc_bench")
    prefix = bench_settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]
    assert prefix == "stagingsvc-bench:"
    assert bench_settings.ROOT_URLCONF == "bench.urls"
    assert "bench.noop_tasks" in bench_settings.CELERY_IMPORTS


def test_rounds_of_one_endpoint_are_pooled():
    from bench.loadgen import LoadReport
    from bench.status_poll import pooled_report

    rounds = [
        LoadReport(requests=1000, seconds=10, p50_ms=5, p99_ms=50, mean_ms=6, errors=0),
        LoadReport(requests=3000, seconds=10, p50_ms=3, p99_ms=30, mean_ms=4, errors=1),
    ]
    pooled = pooled_report(rounds)
    assert pooled.requests_per_second == 200
    assert (pooled.p50_ms, pooled.p99_ms, pooled.errors) == (4, 40, 1)


def test_the_supervisor_starts_gunicorn_and_a_worker_with_the_bench_settings(tmp_path: Path):
    """The run's own readiness checks against the real commands (a queue of its own, so a
    bench run on the same machine loses no task to it)."""
    import uuid

    import requests
    from django.conf import settings

    from bench.harness import SMALL_DB

    if not settings.REDIS_AVAILABLE:
        pytest.skip("Redis does not answer; CI never skips this")

    with Supervisor(tmp_path) as supervisor:
        url = supervisor.start_web("web", SMALL_DB)
        assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
        supervisor.start_worker(
            "worker", SMALL_DB, concurrency=1, queues=f"bench-smoke-{uuid.uuid4().hex[:8]}"
        )
        processes = list(supervisor.processes.values())
    assert all(process.poll() is not None for process in processes)
