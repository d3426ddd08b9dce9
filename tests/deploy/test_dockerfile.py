"""deploy/Dockerfile and its entry point, checked by structure (no container engine here): a
slim pinned Python base, a non-root user, exec-form entry point, and every copied path present."""

import json
import subprocess

import pytest
from dockerfile_parse import DockerfileParser

from tests.deploy.conftest import DEPLOY

REPO = DEPLOY.parent
ENTRYPOINT = DEPLOY / "docker" / "entrypoint.sh"


@pytest.fixture(scope="module")
def instructions() -> list[dict]:
    parser = DockerfileParser(path=str(DEPLOY / "Dockerfile"))
    return [i for i in parser.structure if i["instruction"] != "COMMENT"]


def of(instructions, name: str) -> list[str]:
    return [i["value"] for i in instructions if i["instruction"] == name]


def test_it_builds_on_a_slim_python_3_11_with_a_pinned_tag(instructions):
    (base,) = of(instructions, "FROM")
    image, _, tag = base.partition(":")
    assert image == "python"
    assert tag.startswith("3.11-slim")
    assert instructions[0]["instruction"] == "FROM"


def test_the_processes_run_as_an_unprivileged_user(instructions):
    users = of(instructions, "USER")
    assert users, "no USER instruction: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    last_user = max(i for i, ins in enumerate(instructions) if ins["instruction"] == "USER")
    run_after = [ins for ins in instructions[last_user:] if ins["instruction"] == "RUN"]
    assert run_after == []


def test_entry_point_and_default_command_use_the_exec_form(instructions):
    (entrypoint,) = of(instructions, "ENTRYPOINT")
    (command,) = of(instructions, "CMD")
    # The JSON form: the process gets the container's SIGTERM itself (warm shutdown).
    assert json.loads(entrypoint) == ["/usr/local/bin/stagingsvc-entrypoint"]
    assert json.loads(command) == ["web"]


def test_it_copies_only_paths_that_exist_and_never_uses_add(instructions):
    assert of(instructions, "ADD") == []
    for value in of(instructions, "COPY"):
        *sources, _destination = value.split()
        for source in sources:
            assert not source.startswith("--"), "flags are not expected here"
            assert (REPO / source).exists(), source


def test_pip_keeps_no_cache_in_the_image(instructions):
    installs = [run for run in of(instructions, "RUN") if "pip install" in run]
    assert installs
    assert all("--no-cache-dir" in run and "-r requirements.txt" in run for run in installs)


def test_production_settings_and_the_listening_address_are_the_default(instructions):
    env = " ".join(of(instructions, "ENV"))
    assert "DJANGO_SETTINGS_MODULE=stagingsvc.settings.production" in env
    assert "HOST=0.0.0.0" in env


def test_the_build_context_leaves_out_local_state():
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "var", ".env"} <= set(ignored)


def test_the_entry_point_is_valid_shell_and_runs_each_process():
    assert ENTRYPOINT.stat().st_mode & 0o111, "the entry point must be executable"
    result = subprocess.run(["sh", "-n", str(ENTRYPOINT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    script = ENTRYPOINT.read_text()
    for command in (
        "exec gunicorn -c stagingsvc/gunicorn.conf.py stagingsvc.wsgi",
        "exec celery -A stagingsvc worker -Q staging ",
        "exec celery -A stagingsvc worker -Q control ",
        "exec celery -A stagingsvc worker -Q webhooks --pool threads ",
        "exec celery -A stagingsvc beat",
        "exec celery -A stagingsvc flower",
    ):
        assert command in script


def test_the_entry_point_runs_any_other_command_as_given(tmp_path):
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "echo", "hello"], capture_output=True, text=True, timeout=10
    )
    assert (result.returncode, result.stdout) == (0, "hello\n")


def test_the_image_starts_flower_on_loopback_unless_told_otherwise():
    script = ENTRYPOINT.read_text()
    assert '--address="${FLOWER_ADDRESS:-127.0.0.1}"' in script
    assert "0.0.0.0" not in script
