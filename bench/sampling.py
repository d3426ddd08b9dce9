"""What the dispatch benchmarks (D1-D3) share: a sampler that reads a figure throughout a run
(sub-jobs running, the broker's queue length), the reading of the broker's staging messages,
and the arithmetic of their figures. The arithmetic is plain functions, tested on its own."""

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# What the dispatch benchmarks tell their workers beyond the worker processes: the bound on
# sub-jobs handed to the broker and not ended, as docs/dispatch.md says to set it (worker
# processes plus one or two).
DISPATCH_PREFETCH = 1


def in_flight_bound(processes: int) -> int:
    return processes + DISPATCH_PREFETCH


def in_flight_env(processes: int) -> dict[str, str]:
    """Worker environment for ``processes`` worker processes with the documented bound."""
    return {"STAGING_DISPATCH_MAX_IN_FLIGHT": str(in_flight_bound(processes))}


@dataclass
class Sampler:
    """Calls ``read`` every ``every`` seconds in a thread of its own, from ``start`` until
    ``stop``, keeping each value with its time since the start. ``finish`` runs in that thread
    as it ends (a thread that used Django's database must close its own connection)."""

    read: Callable[[], object]
    every: float = 0.05
    finish: Callable[[], None] = lambda: None
    samples: list[tuple[float, object]] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self):
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)

    def start(self) -> "Sampler":
        self._started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> list[tuple[float, object]]:
        self._stopping.set()
        self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"sampling failed: {self.error!r}") from self.error
        return self.samples

    def __enter__(self) -> "Sampler":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _loop(self) -> None:
        try:
            while not self._stopping.is_set():
                self.samples.append((time.monotonic() - self._started, self.read()))
                self._stopping.wait(self.every)
        except BaseException as exc:  # reported by stop(), in the run's thread
            self.error = exc
        finally:
            self.finish()

    def values(self) -> list:
        return [value for _, value in self.samples]


def sample_summary(values: list[int | float]) -> dict:
    """Count, maximum and mean of sampled values (what a run's details keep of them)."""
    if not values:
        return {"samples": 0, "max": None, "mean": None}
    return {
        "samples": len(values),
        "max": max(values),
        "mean": round(sum(values) / len(values), 3),
    }


def max_within(summary: dict, bound: int) -> bool:
    """Whether the sampled values (``sample_summary``) never went above ``bound``."""
    return summary["max"] is not None and summary["max"] <= bound


def slowdown(with_other: float, alone: float) -> float:
    """How many times longer a job took beside another's than on its own."""
    if alone <= 0:
        raise ValueError("a job's time alone must be positive")
    return with_other / alone


def fifo_estimate(*, files_ahead: int, files_per_second: float, alone: float) -> float:
    """Seconds a job would take behind ``files_ahead`` files served first in first out: the
    time to drain them at the rate measured, then its own time alone."""
    if files_per_second <= 0:
        raise ValueError("the rate of the work ahead must be positive")
    return files_ahead / files_per_second + alone


def files_per_second(spans: list[tuple[float, float, int]]) -> float:
    """Rate of finished sub-jobs given as (started, finished, files), in UNIX seconds: their
    files over the time from the first start to the last end (the processes overlapped)."""
    if not spans:
        raise ValueError("no finished sub-jobs to measure a rate from")
    first = min(started for started, _, _ in spans)
    last = max(finished for _, finished, _ in spans)
    return sum(files for _, _, files in spans) / max(last - first, 1e-6)


def slot_use(spans: list[tuple[float, float, int]], slots: int) -> float:
    """Share of ``slots`` kept busy by sub-jobs (started, finished, files) from the first
    start to the last end: 1.0 when a slot never waits between one sub-job and the next."""
    if not spans or slots <= 0:
        raise ValueError("slot use needs sub-jobs and at least one slot")
    first = min(started for started, _, _ in spans)
    last = max(finished for _, finished, _ in spans)
    busy = sum(finished - started for started, finished, _ in spans)
    return busy / (slots * max(last - first, 1e-6))


def delivered_task_ids(unacked: list[bytes | str], queue: str) -> list[str]:
    """Task ids of the messages of ``queue`` delivered and not yet acknowledged: kombu's Redis
    transport keeps each as JSON [message, exchange, routing key] in one hash for every queue
    (the default exchange routes by queue name); Celery's message headers carry the task id."""
    ids = []
    for raw in unacked:
        message, _, routing_key = json.loads(raw)
        if routing_key == queue:
            ids.append(message.get("headers", {}).get("id", ""))
    return ids


def staging_messages(queue_length: int, unacked: list[bytes | str], queue: str) -> int:
    """Messages of ``queue`` in the broker: waiting in its list plus delivered and not yet
    acknowledged."""
    return queue_length + len(delivered_task_ids(unacked, queue))
