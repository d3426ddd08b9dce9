"""The arithmetic and sampling behind the dispatch benchmarks (D1-D3), on made-up readings. No
figure is checked: timing belongs to `make bench`."""

import json
import threading

import pytest

from bench.cli import BENCHMARKS, parse_args
from bench.harness import FULL, QUICK
from bench.sampling import (
    DISPATCH_PREFETCH,
    Sampler,
    delivered_task_ids,
    fifo_estimate,
    files_per_second,
    in_flight_bound,
    in_flight_env,
    sample_summary,
    slot_use,
    slowdown,
    staging_messages,
)


def unacked(routing_key: str, task_id: str = "t") -> bytes:
    message = {"body": "...", "headers": {"id": task_id, "task": "tasks.staging.run_subjob"}}
    return json.dumps([message, routing_key, routing_key]).encode()


def test_the_dispatch_benchmarks_can_be_chosen_on_their_own():
    assert parse_args(["--only", "d3,D1,d2"]).only == ["D1", "D2", "D3"]
    assert {"D1", "D2", "D3"} <= set(BENCHMARKS)


def test_full_sizes_are_the_issues_and_quick_ones_smaller():
    assert FULL.fairness_big_files == 20_000
    assert FULL.broker_pending_subjobs == 100_000
    assert QUICK.fairness_big_files < FULL.fairness_big_files
    assert QUICK.limit_files < FULL.limit_files
    assert QUICK.broker_pending_subjobs < FULL.broker_pending_subjobs
    assert QUICK.broker_seconds < FULL.broker_seconds


def test_the_in_flight_bound_is_the_worker_processes_plus_the_prefetch():
    assert in_flight_bound(4) == 4 + DISPATCH_PREFETCH
    assert in_flight_env(2) == {"STAGING_DISPATCH_MAX_IN_FLIGHT": str(2 + DISPATCH_PREFETCH)}


def test_a_slowdown_is_the_time_beside_another_job_over_the_time_alone():
    assert slowdown(3.0, 1.5) == 2.0
    with pytest.raises(ValueError):
        slowdown(1.0, 0)


def test_first_in_first_out_drains_the_work_ahead_before_the_small_job_runs():
    assert fifo_estimate(files_ahead=1_000, files_per_second=100, alone=0.5) == 10.5
    with pytest.raises(ValueError):
        fifo_estimate(files_ahead=1, files_per_second=0, alone=1)


def test_the_rate_counts_overlapping_sub_jobs_once_over_their_whole_span():
    spans = [(100.0, 102.0, 50), (100.5, 102.5, 50), (102.0, 104.0, 50)]
    assert files_per_second(spans) == 150 / 4.0
    with pytest.raises(ValueError):
        files_per_second([])


def test_staging_messages_count_the_queue_and_only_the_staging_deliveries():
    delivered = [unacked("staging"), unacked("control"), unacked("staging").decode()]
    assert staging_messages(3, delivered, "staging") == 5
    assert staging_messages(0, [], "staging") == 0


def test_the_task_ids_of_delivered_staging_messages_are_read_from_their_headers():
    delivered = [unacked("staging", "a"), unacked("control", "b"), unacked("staging", "c")]
    assert delivered_task_ids(delivered, "staging") == ["a", "c"]


def test_a_summary_keeps_the_count_the_maximum_and_the_mean():
    assert sample_summary([1, 2, 2, 3]) == {"samples": 4, "max": 3, "mean": 2.0}
    assert sample_summary([]) == {"samples": 0, "max": None, "mean": None}


def test_the_sampler_reads_until_stopped_and_finishes_in_its_own_thread():
    readings, finished_in = iter(range(1_000)), []
    enough = threading.Event()

    def read() -> int:
        value = next(readings)
        if value >= 3:
            enough.set()
        return value

    sampler = Sampler(
        read, every=0.001, finish=lambda: finished_in.append(threading.current_thread())
    )
    with sampler:
        enough.wait(timeout=30)
    values = sampler.values()
    assert values[:4] == [0, 1, 2, 3]
    assert values == sorted(values)
    assert [t for t, _ in sampler.samples] == sorted(t for t, _ in sampler.samples)
    assert finished_in and finished_in[0] is not threading.current_thread()


def test_a_failed_reading_is_raised_when_the_sampler_stops():
    def read() -> int:
        raise ConnectionError("broker away")

    sampler = Sampler(read, every=0.001).start()
    with pytest.raises(RuntimeError, match="broker away"):
        sampler.stop()


def test_slot_use_is_the_busy_share_of_the_slots_between_first_start_and_last_end():
    back_to_back = [(0.0, 1.0, 50), (1.0, 2.0, 50), (0.0, 2.0, 50)]
    assert slot_use(back_to_back, 2) == 1.0
    with_gaps = [(0.0, 1.0, 50), (1.5, 2.5, 50), (0.0, 2.5, 50)]
    assert slot_use(with_gaps, 2) == pytest.approx(4.5 / 5.0)
    with pytest.raises(ValueError):
        slot_use([], 2)
