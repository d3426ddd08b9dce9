"""manage.py bootstrap (the first step of `make run`): ARCHIVE_ROOT and STAGING_ROOT, when set,
are the primary store's roots on every start, not only on the first."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from staging.models import Store

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def static_root(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path / "static"


def bootstrap(monkeypatch, **roots: Path | None) -> str:
    for name, value in roots.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(value))
    out = StringIO()
    call_command("bootstrap", stdout=out)
    return out.getvalue()


def test_a_second_start_with_new_roots_moves_the_primary_store_and_says_so(monkeypatch, tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    bootstrap(monkeypatch, ARCHIVE_ROOT=old / "archive", STAGING_ROOT=old / "staging")

    banner = bootstrap(monkeypatch, ARCHIVE_ROOT=new / "archive", STAGING_ROOT=new / "staging")

    store = Store.objects.get(is_primary=True)
    assert (store.archive_root, store.staging_root) == (
        str(new / "archive"),
        str(new / "staging"),
    )
    assert f"archive {new / 'archive'}" in banner
    assert f"was {old / 'archive'}" in banner
    assert f"was {old / 'staging'}" in banner
    assert Store.objects.count() == 1


def test_an_unchanged_start_does_not_speak_of_moved_roots(monkeypatch, tmp_path):
    roots = {"ARCHIVE_ROOT": tmp_path / "archive", "STAGING_ROOT": tmp_path / "staging"}
    bootstrap(monkeypatch, **roots)
    banner = bootstrap(monkeypatch, **roots)
    assert "was " not in banner
    assert f"archive {tmp_path / 'archive'}" in banner


def test_without_the_variables_a_store_made_primary_by_hand_keeps_its_roots(
    monkeypatch, tmp_path, store
):
    bootstrap(monkeypatch, ARCHIVE_ROOT=None, STAGING_ROOT=None)
    store.refresh_from_db()
    assert store.archive_root == str(tmp_path / "archive")


def test_roots_that_contain_one_another_refuse_the_start_and_change_nothing(
    monkeypatch, tmp_path, store
):
    with pytest.raises(CommandError) as refused:
        bootstrap(monkeypatch, ARCHIVE_ROOT=tmp_path / "x", STAGING_ROOT=tmp_path / "x" / "staged")
    message = str(refused.value)
    assert "may not contain one another" in message
    assert "ARCHIVE_ROOT" in message and "STAGING_ROOT" in message
    store.refresh_from_db()
    assert store.archive_root == str(tmp_path / "archive")


def test_a_relative_root_refuses_the_start(monkeypatch, tmp_path, store):
    with pytest.raises(CommandError, match="absolute path"):
        bootstrap(monkeypatch, ARCHIVE_ROOT=Path("relative/archive"), STAGING_ROOT=None)


def test_the_banner_shows_the_venv_command_for_a_superuser(monkeypatch, tmp_path):
    banner = bootstrap(monkeypatch, ARCHIVE_ROOT=tmp_path / "a", STAGING_ROOT=tmp_path / "s")
    assert ".venv/bin/python manage.py createsuperuser" in banner
    assert "(python manage.py createsuperuser)" not in banner
