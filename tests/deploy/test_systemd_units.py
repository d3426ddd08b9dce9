"""deploy/systemd with `systemd-analyze verify` (and its offline security score) where systemd
is installed (CI installs it, see .ci/run), plus what the units promise operators."""

import os
import shutil
import subprocess

import pytest

from tests.deploy.conftest import DEPLOY

UNITS = DEPLOY / "systemd"
INSTALL_PREFIX = "/opt/stagingsvc"
SERVICES = (
    "stagingsvc-web.service",
    "stagingsvc-worker@.service",
    "stagingsvc-control.service",
    "stagingsvc-webhooks.service",
    "stagingsvc-beat.service",
)


def systemd_analyze() -> str:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs systemd for systemd-analyze (.ci/run)")
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return binary


@pytest.fixture
def installed_units(tmp_path):
    """The units as an install would see them: the virtualenv's gunicorn and celery exist
    (verify checks every ExecStart binary), under a temporary prefix."""
    prefix = tmp_path / "opt" / "stagingsvc"
    (prefix / ".venv" / "bin").mkdir(parents=True)
    for name in ("gunicorn", "celery"):
        binary = prefix / ".venv" / "bin" / name
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
    units = tmp_path / "units"
    units.mkdir()
    for unit in UNITS.iterdir():
        if unit.suffix in (".service", ".target"):
            text = unit.read_text().replace(INSTALL_PREFIX, str(prefix))
            (units / unit.name).write_text(text)
    return units


def parse(name: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value given (systemd lets a key repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(" ".join(value.split()))
    return sections


def test_systemd_accepts_every_unit_without_a_warning(installed_units):
    binary = systemd_analyze()
    result = subprocess.run(
        [
            binary,
            "verify",
            str(installed_units / "stagingsvc-web.service"),
            str(installed_units / "stagingsvc-worker@1.service"),
            str(installed_units / "stagingsvc-worker@2.service"),
            str(installed_units / "stagingsvc-beat.service"),
            str(installed_units / "stagingsvc.target"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_the_verifier_reports_an_unknown_directive(installed_units):
    binary = systemd_analyze()
    unit = installed_units / "stagingsvc-beat.service"
    unit.write_text(unit.read_text().replace("Restart=on-failure", "Restartt=on-failure"))
    result = subprocess.run(
        [binary, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert "Unknown key 'Restartt'" in result.stderr


@pytest.mark.parametrize(
    "unit",
    ["stagingsvc-web.service", "stagingsvc-worker@1.service", "stagingsvc-beat.service"],
)
def test_each_service_is_hardened(installed_units, unit):
    binary = systemd_analyze()
    result = subprocess.run(
        # The threshold is ten times the exposure level printed: at most 2.0 of 10 ("OK").
        [binary, "security", "--offline=yes", "--threshold=20", str(installed_units / unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Overall exposure level" in result.stdout


@pytest.mark.parametrize("name", SERVICES)
def test_services_restart_on_failure_as_an_unprivileged_user(name):
    service = parse(name)["Service"]
    assert service["Restart"] == ["on-failure"]
    assert service["User"] == ["stagingsvc"]
    assert service["NoNewPrivileges"] == ["yes"]
    assert service["ProtectSystem"] == ["strict"]
    assert "DJANGO_SETTINGS_MODULE=stagingsvc.settings.production" in service["Environment"]


def test_the_worker_template_names_each_instance_and_waits_for_its_sub_jobs():
    service = parse("stagingsvc-worker@.service")["Service"]
    (command,) = service["ExecStart"]
    assert "celery -A stagingsvc worker -Q staging " in command
    assert "--hostname worker%i@%H" in command
    assert service["KillSignal"] == ["SIGTERM"]
    assert service["TimeoutStopSec"] == ["15min"]


def test_the_control_queue_has_a_worker_of_its_own():
    # Dispatch passes and releases must never wait while every staging process is busy.
    (command,) = parse("stagingsvc-control.service")["Service"]["ExecStart"]
    assert "celery -A stagingsvc worker -Q control " in command
    assert "--hostname control@%H" in command


def test_webhook_sends_have_a_threaded_worker_of_their_own():
    # A slow receiver must never hold up the control worker's dispatch passes and releases.
    service = parse("stagingsvc-webhooks.service")["Service"]
    (command,) = service["ExecStart"]
    assert "celery -A stagingsvc worker -Q webhooks --pool threads " in command
    assert "--hostname webhooks@%H" in command
    assert "--concurrency ${WEBHOOK_CONCURRENCY}" in command
    assert "WEBHOOK_CONCURRENCY=8" in service["Environment"]


def test_the_web_runs_gunicorn_with_the_project_config():
    (command,) = parse("stagingsvc-web.service")["Service"]["ExecStart"]
    assert command.endswith("gunicorn -c stagingsvc/gunicorn.conf.py stagingsvc.wsgi")


def test_the_workers_copy_below_the_web_and_may_lower_their_own_priority():
    worker = parse("stagingsvc-worker@.service")["Service"]
    web = parse("stagingsvc-web.service")["Service"]
    assert int(worker["CPUWeight"][0]) < int(web.get("CPUWeight", ["100"])[0])
    assert int(worker["IOWeight"][0]) < int(web.get("IOWeight", ["100"])[0])
    # STAGING_WORKER_NICE / STAGING_WORKER_IONICE: without these the filter kills the worker.
    assert "setpriority ioprio_set" in worker["SystemCallFilter"]
