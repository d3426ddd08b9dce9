"""The laptop install's secret key file: private from the moment it exists, written whole, and
one key for every process that starts at once."""

import os
import stat
import subprocess
import sys

from stagingsvc.settings.base import local_secret_key
from tests.workers import REPO_ROOT


def test_the_key_file_is_private_even_under_a_permissive_umask(tmp_path):
    key_file = tmp_path / "secret-key"
    previous = os.umask(0)
    try:
        key = local_secret_key(key_file)
    finally:
        os.umask(previous)

    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key) >= 50
    assert local_secret_key(key_file) == key
    assert [p.name for p in tmp_path.iterdir()] == ["secret-key"]  # no temporary left behind


def test_processes_starting_together_agree_on_one_key(tmp_path):
    key_file = tmp_path / "secret-key"
    code = (
        "import sys, time; from pathlib import Path; "
        "from stagingsvc.settings.base import local_secret_key; "
        "time.sleep(max(0, float(sys.argv[2]) - time.time())); "
        "print(local_secret_key(Path(sys.argv[1])))"
    )
    import time

    start_at = str(time.time() + 3)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "stagingsvc.settings.test"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(key_file), start_at],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    keys = {process.communicate(timeout=60)[0].strip() for process in processes}

    assert keys == {key_file.read_text().strip()}
