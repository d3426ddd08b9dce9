"""deploy/compose.yaml against the Compose Specification's JSON schema (the copy that
check-jsonschema ships, so no network), and what `--scale worker=N` and the health checks need."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY, load_documents

COMPOSE = DEPLOY / "compose.yaml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def validate_compose(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_documents(COMPOSE)[0]


def test_the_compose_file_matches_the_compose_specification():
    result = validate_compose(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_specification_check_rejects_a_misspelt_key(tmp_path):
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_periode:"))
    result = validate_compose(broken)
    assert result.returncode != 0
    assert "stop_grace_periode" in result.stdout + result.stderr


def test_it_runs_every_process_of_the_service_and_its_servers(compose):
    assert set(compose["services"]) == {
        "migrate",
        "web",
        "worker",
        "control",
        "webhooks",
        "beat",
        "flower",
        "redis",
        "postgres",
    }
    for name in ("web", "worker", "control", "webhooks", "beat", "flower", "migrate"):
        assert compose["services"][name]["command"] == [name]


def test_workers_can_be_scaled_to_many_copies(compose):
    worker = compose["services"]["worker"]
    # A fixed container name or a published host port would stop a second copy from starting.
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["stop_signal"] == "SIGTERM"
    assert worker["stop_grace_period"] == "15m"


def test_webhook_sends_have_a_worker_of_their_own(compose):
    webhooks = compose["services"]["webhooks"]
    assert webhooks["environment"]["WEBHOOK_CONCURRENCY"] == "${WEBHOOK_CONCURRENCY:-8}"
    assert webhooks["stop_signal"] == "SIGTERM"


def test_beat_is_never_more_than_one(compose):
    assert compose["services"]["beat"]["deploy"]["replicas"] == 1


def test_web_and_workers_share_the_named_archive_and_staging_volumes(compose):
    assert {"archive", "staging"} <= set(compose["volumes"])
    for name in ("web", "worker"):
        volumes = compose["services"][name]["volumes"]
        assert "archive:/data/archive:ro" in volumes
        assert "staging:/data/staging" in volumes


def test_the_web_health_check_asks_healthz_and_readyz(compose):
    check = " ".join(compose["services"]["web"]["healthcheck"]["test"])
    assert "healthz" in check and "readyz" in check
    for name in ("worker", "redis", "postgres"):
        assert compose["services"][name]["healthcheck"]["test"]


def test_the_service_runs_production_settings_on_postgresql_and_redis(compose):
    env = compose["services"]["web"]["environment"]
    assert env["DJANGO_SETTINGS_MODULE"] == "stagingsvc.settings.production"
    assert env["DATABASE_URL"].startswith("postgres://")
    assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0"
    assert env["SECRET_KEY"].startswith("${SECRET_KEY:?")
    # What production settings require besides: a shared cache and the metrics token.
    assert env["CACHE_URL"] == "redis://redis:6379/1"
    assert env["METRICS_TOKEN"].startswith("${METRICS_TOKEN:?")


def test_flower_is_published_on_the_hosts_loopback_only(compose):
    flower = compose["services"]["flower"]
    assert flower["ports"] == ["127.0.0.1:${FLOWER_PORT:-5555}:5555"]
