"""Prometheus multiprocess files across restarts: gunicorn's master, as it starts, removes every
file a previous run left; a Celery worker's main process removes all but its own (it may have
counted already)."""

import runpy
from pathlib import Path

from staging.metrics_multiprocess import multiprocess_dir_reset

GUNICORN_CONF = Path(__file__).resolve().parents[2] / "stagingsvc" / "gunicorn.conf.py"


def test_gunicorn_start_removes_what_a_previous_run_left(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "prometheus"))
    (tmp_path / "prometheus").mkdir()
    (tmp_path / "prometheus" / "counter_4242.db").write_bytes(b"old")

    runpy.run_path(str(GUNICORN_CONF))["on_starting"](server=None)

    assert list((tmp_path / "prometheus").iterdir()) == []


def test_a_worker_keeps_its_own_files_and_removes_the_others(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    for name in ("counter_4242.db", "counter_77.db", "histogram_4242.db"):
        (tmp_path / name).write_bytes(b"")

    multiprocess_dir_reset(keep_pid=77)

    assert [path.name for path in tmp_path.iterdir()] == ["counter_77.db"]


def test_without_a_multiprocess_directory_nothing_is_created(tmp_path, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.chdir(tmp_path)

    multiprocess_dir_reset()

    assert list(tmp_path.iterdir()) == []
