"""Store roots only under the base directories of STORE_ROOTS_ALLOWED, on every path that writes
them: the admin's store form (add and change) and ``manage.py addstore``."""

from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from staging.models import Store
from staging.roles import Role
from tests.admin.conftest import staff

pytestmark = pytest.mark.django_db


@pytest.fixture
def allowed(settings, tmp_path: Path) -> Path:
    base = tmp_path / "data"
    base.mkdir()
    settings.STORE_ROOTS_ALLOWED = [str(base)]
    return base


@pytest.fixture
def adam_browser(db) -> Client:
    staff("adam", Role.ADMIN)
    browser = Client()
    browser.post("/admin/login/", {"username": "adam", "password": "correct horse battery staple"})
    return browser


def store_form(archive: str, staging: str, slug: str = "tape2") -> dict:
    return {
        "slug": slug,
        "description": "",
        "kind": "posix",
        "archive_root": archive,
        "staging_root": staging,
        "simulated_latency_ms": 0,
        # The tape library inline, left empty.
        "tape_library-TOTAL_FORMS": "0",
        "tape_library-INITIAL_FORMS": "0",
    }


@pytest.mark.parametrize(
    ("archive", "message"),
    [
        ("/etc/stagingsvc", "is not under an allowed base directory"),
        ("{base}/../outside", "is not under an allowed base directory"),
        ("{base}", "is not under an allowed base directory"),
        ("{base}/link-to-etc/x", "is not under an allowed base directory"),
        ("{base}/a\x00b", "Null characters are not allowed"),
        ("{base}/a\nb", "control character"),
    ],
)
def test_the_admin_refuses_store_roots_outside_the_allowed_bases(
    adam_browser, allowed, archive, message
):
    (allowed / "link-to-etc").symlink_to("/etc")

    response = adam_browser.post(
        "/admin/staging/store/add/",
        store_form(archive.format(base=allowed), str(allowed / "staging")),
    )

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Store.objects.filter(slug="tape2").exists()


def test_the_admin_refuses_changing_a_root_to_outside_the_allowed_bases(
    adam_browser, allowed, store
):
    response = adam_browser.post(
        f"/admin/staging/store/{store.pk}/change/",
        store_form("/etc/stagingsvc", str(allowed / "staging"), slug="primary"),
    )

    assert response.status_code == 200
    assert "is not under an allowed base directory" in response.content.decode()
    store.refresh_from_db()
    assert store.archive_root != "/etc/stagingsvc"


def test_the_admin_refuses_roots_that_contain_one_another(adam_browser, allowed):
    response = adam_browser.post(
        "/admin/staging/store/add/",
        store_form(str(allowed / "a"), str(allowed / "a" / "staging")),
    )

    assert "may not contain one another" in response.content.decode()
    assert not Store.objects.filter(slug="tape2").exists()


def test_the_admin_saves_roots_under_an_allowed_base_resolved_and_created(adam_browser, allowed):
    response = adam_browser.post(
        "/admin/staging/store/add/",
        store_form(str(allowed / "x" / ".." / "a"), str(allowed / "s")),
    )

    assert response.status_code == 302
    store = Store.objects.get(slug="tape2")
    assert store.archive_root == str(allowed / "a")
    assert Path(store.archive_root).is_dir() and Path(store.staging_root).is_dir()


def test_addstore_refuses_roots_outside_the_allowed_bases(allowed):
    with pytest.raises(CommandError, match="is not under an allowed base directory"):
        call_command(
            "addstore",
            "secrets",
            "--archive-root",
            "/etc/stagingsvc",
            "--staging-root",
            str(allowed / "staging"),
        )

    assert not Store.objects.exists()


def test_the_allowed_bases_default_to_the_parents_of_the_env_roots():
    from stagingsvc.settings import base

    assert {Path(p) for p in base.STORE_ROOTS_ALLOWED} == {
        base.ARCHIVE_ROOT.parent,
        base.STAGING_ROOT.parent,
    }
