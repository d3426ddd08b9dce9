"""WLCG tape API: POST {uri}/archiveinfo. The archive store plays the tape, the staging area
the disk buffer."""

import shutil
from pathlib import Path

import pytest

from staging.roles import Role
from tests.api.helpers import assert_problem
from tests.api.tape_helpers import API, second_store

pytestmark = pytest.mark.django_db


def archiveinfo(client, *paths: str, slash: str = ""):
    return client.post(f"{API}/archiveinfo{slash}", {"paths": list(paths)}, "json")


def put(root: str, relative: str, data: bytes) -> None:
    target = Path(root) / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


@pytest.mark.parametrize("slash", ["", "/"])
def test_it_reports_where_each_file_of_a_mix_is(client_for, archive_files, store, slash):
    archive_files({"staged.dat": b"both", "unstaged.dat": b"tape", "lost.dat": b"gone"})
    put(store.staging_root, "staged.dat", b"both")
    put(store.staging_root, "disk-only.dat", b"disk")
    (Path(store.archive_root) / "lost.dat").unlink()
    (Path(store.archive_root) / "adir").mkdir()

    response = archiveinfo(
        client_for(),
        "/staged.dat",
        "//primary//unstaged.dat",
        "/disk-only.dat",
        "/lost.dat",
        "/missing.dat",
        "/adir",
        "/../etc/passwd",
        slash=slash,
    )

    assert response.status_code == 200, response.content
    assert response.json() == [
        {"path": "/staged.dat", "locality": "DISK_AND_TAPE"},
        {"path": "/primary/unstaged.dat", "locality": "TAPE"},
        {"path": "/disk-only.dat", "locality": "DISK"},
        {"path": "/lost.dat", "locality": "LOST"},
        {"path": "/missing.dat", "error": "no such file"},
        {"path": "/adir", "error": "the path is a directory"},
        {"path": "/../etc/passwd", "error": "path may not contain '..': '/../etc/passwd'"},
    ]


def test_files_not_catalogued_yet_are_found_on_disk(client_for, store):
    put(store.archive_root, "fresh.dat", b"new")
    response = archiveinfo(client_for(), "/fresh.dat")
    assert response.json() == [{"path": "/fresh.dat", "locality": "TAPE"}]


def test_a_stale_staged_copy_of_another_size_does_not_count(client_for, archive_files, store):
    archive_files({"a.dat": b"new content"})
    put(store.staging_root, "a.dat", b"old")
    assert archiveinfo(client_for(), "/a.dat").json()[0]["locality"] == "TAPE"


def test_a_symlink_out_of_the_store_is_an_error(tmp_path, client_for, store):
    (tmp_path / "secret").write_text("secret")
    (Path(store.archive_root) / "escape").symlink_to(tmp_path / "secret")
    body = archiveinfo(client_for(), "/escape").json()
    assert body == [{"path": "/escape", "error": "the path leads outside the store"}]


def test_an_unreadable_archive_is_unavailable(tmp_path, client_for, archive_files):
    cold = second_store(tmp_path)
    archive_files({"a.dat": b"a"}, cold)
    shutil.rmtree(cold.archive_root)  # the archive's mount is gone
    body = archiveinfo(client_for(), "/cold/a.dat").json()
    assert body == [{"path": "/cold/a.dat", "locality": "UNAVAILABLE"}]


def test_paths_of_other_stores_are_answered_from_that_store(tmp_path, client_for, archive_files):
    cold = second_store(tmp_path)
    archive_files({"x.dat": b"cold"}, cold)
    body = archiveinfo(client_for(), "/cold/x.dat", "/x.dat").json()
    assert body == [
        {"path": "/cold/x.dat", "locality": "TAPE"},
        {"path": "/x.dat", "error": "no such file"},
    ]


@pytest.mark.parametrize("body", [{}, {"paths": []}, {"paths": "/a"}, {"paths": [None]}, []])
def test_malformed_bodies_are_a_400(client_for, store, body):
    assert_problem(client_for().post(f"{API}/archiveinfo", body, "json"), 400)


def test_the_admin_role_may_not_ask(client_for, store):
    assert_problem(archiveinfo(client_for(Role.ADMIN), "/a"), 403)
