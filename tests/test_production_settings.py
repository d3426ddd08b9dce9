"""Production settings, loaded in a subprocess as a deployment loads them: `check --deploy` is
clean, and the service refuses to start without the settings it cannot guess."""

import os
import secrets
import subprocess
import sys

import pytest

from tests.workers import REPO_ROOT


def manage(tmp_path, *args: str, **overrides: str) -> subprocess.CompletedProcess:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("STAGINGSVC_", "SECURE_"))
        and key
        not in {
            "DATABASE_URL",
            "CELERY_BROKER_URL",
            "SECRET_KEY",
            "ALLOWED_HOSTS",
            "CACHE_URL",
            "METRICS_TOKEN",
            "TRUSTED_PROXY",
            "TRUST_X_FORWARDED_PROTO",
            "TOKEN_TTL_HOURS",
        }
    }
    env.update(
        DJANGO_SETTINGS_MODULE="stagingsvc.settings.production",
        STAGINGSVC_VAR_DIR=str(tmp_path / "var"),
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="staging.example.org",
        DATABASE_URL="postgres://stagingsvc@db.example.org:5432/stagingsvc",
        CELERY_BROKER_URL="redis://redis.example.org:6379/0",
        CACHE_URL="redis://redis.example.org:6379/1",
        METRICS_TOKEN=secrets.token_urlsafe(32),
        TRUSTED_PROXY="true",
    )
    env.update(overrides)
    env = {key: value for key, value in env.items() if value is not None}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_finds_no_issue(tmp_path):
    result = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_settings_suit_a_tls_proxy_in_front_of_gunicorn(tmp_path):
    code = (
        "from django.conf import settings as s; "
        "print(s.SECURE_PROXY_SSL_HEADER, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, "
        "s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS > 0, s.DEBUG, s.ALLOWED_HOSTS, "
        "s.SECURE_REDIRECT_EXEMPT)"
    )
    result = manage(tmp_path, "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "('HTTP_X_FORWARDED_PROTO', 'https') True True True True False "
        "['staging.example.org'] ['^healthz$', '^readyz$', '^metrics$']"
    )


@pytest.mark.parametrize(
    "missing",
    [
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "DATABASE_URL",
        "CELERY_BROKER_URL",
        "CACHE_URL",
        "METRICS_TOKEN",
    ],
)
def test_it_refuses_to_start_without_a_required_setting(tmp_path, missing):
    result = manage(tmp_path, "check", **{missing: None})
    assert result.returncode != 0
    assert f"{missing} must be set in production" in result.stderr


def test_it_refuses_a_short_secret_key(tmp_path):
    result = manage(tmp_path, "check", SECRET_KEY="change-me")
    assert result.returncode != 0
    assert "SECRET_KEY must be at least 50 random characters" in result.stderr


def test_it_logs_json_lines_by_default(tmp_path):
    code = "import logging; logging.getLogger('stagingsvc.probe').warning('hello')"
    result = manage(tmp_path, "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert '"message": "hello"' in line and '"level": "WARNING"' in line


def test_it_refuses_a_cache_that_each_process_keeps_for_itself(tmp_path):
    result = manage(tmp_path, "check", CACHE_URL="locmemcache://")
    assert result.returncode != 0
    assert "CACHE_URL must name a cache every web process shares" in result.stderr


def test_without_a_trusted_proxy_no_forwarded_header_is_believed(tmp_path):
    code = "from django.conf import settings as s; print(s.SECURE_PROXY_SSL_HEADER)"
    result = manage(tmp_path, "shell", "-c", code, TRUSTED_PROXY=None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "None"


def test_tokens_expire_by_default_unless_the_operator_opts_out(tmp_path):
    code = "from django.conf import settings as s; print(s.REST_KNOX['TOKEN_TTL'])"
    by_default = manage(tmp_path, "shell", "-c", code)
    opted_out = manage(tmp_path, "shell", "-c", code, TOKEN_TTL_HOURS="0")
    assert by_default.stdout.strip().splitlines()[-1] == "90 days, 0:00:00"
    assert opted_out.stdout.strip().splitlines()[-1] == "None"
