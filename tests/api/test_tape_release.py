"""WLCG tape API: POST {uri}/release/{id}."""

import pytest

from staging.models import Job, Pin
from staging.roles import Role
from tests.api.helpers import assert_problem
from tests.api.tape_helpers import API, staged_job

pytestmark = pytest.mark.django_db


def live_pins(job: Job) -> list[str]:
    return sorted(
        Pin.objects.filter(job=job, released_at__isnull=True).values_list("path", flat=True)
    )


def release(client, request_id, *paths: str, slash: str = ""):
    return client.post(f"{API}/release/{request_id}{slash}", {"paths": list(paths)}, "json")


@pytest.mark.parametrize("slash", ["", "/"])
def test_releasing_some_files_unpins_only_those(client_for, archive_files, slash):
    archive_files({"a": b"a", "b": b"b", "c": b"c"})
    client = client_for()
    job = staged_job(client, "/a", "/b", "/c")

    response = release(client, job.uuid, "/a", "/primary/c", slash=slash)

    assert response.status_code == 200, response.content
    assert live_pins(job) == ["b"]


def test_releasing_twice_is_harmless(client_for, archive_files):
    archive_files({"a": b"a"})
    client = client_for()
    job = staged_job(client, "/a")
    assert release(client, job.uuid, "/a").status_code == 200
    assert release(client, job.uuid, "/a").status_code == 200
    assert live_pins(job) == []


def test_a_path_that_is_not_in_the_request_is_a_400_and_releases_nothing(client_for, archive_files):
    archive_files({"a": b"a", "b": b"b", "other": b"o"})
    client = client_for()
    job = staged_job(client, "/a", "/b")

    body = assert_problem(release(client, job.uuid, "/a", "/other"), 400, "/other")

    assert body["unknown_paths"] == ["/other"]
    assert live_pins(job) == ["a", "b"]


def test_another_request_of_the_same_file_keeps_its_pin(client_for, archive_files):
    archive_files({"a": b"a"})
    client = client_for()
    first, second = staged_job(client, "/a"), staged_job(client, "/a")

    release(client, first.uuid, "/a")

    assert (live_pins(first), live_pins(second)) == ([], ["a"])


def test_an_unknown_or_foreign_request_is_a_404(client_for, archive_files):
    archive_files({"a": b"a"})
    job = staged_job(client_for(username="alice"), "/a")
    mallory = client_for(username="mallory")

    assert_problem(release(mallory, job.uuid, "/a"), 404)
    assert_problem(release(mallory, "4b86e181-3a43-4c52-9d7e-3d5f7b0c1a2b", "/a"), 404)
    assert live_pins(job) == ["a"]


def test_gfal2s_placeholder_id_releases_the_callers_own_pins_on_the_paths(
    client_for, archive_files
):
    """gfal-evict without a request id posts to /release/gfal2-placeholder-id."""
    archive_files({"a": b"a", "b": b"b"})
    alice, bob = client_for(username="alice"), client_for(username="bob")
    alice_first, alice_second = staged_job(alice, "/a", "/b"), staged_job(alice, "/a")
    bobs = staged_job(bob, "/a")

    response = release(alice, "gfal2-placeholder-id", "/a")

    assert response.status_code == 200
    assert (live_pins(alice_first), live_pins(alice_second), live_pins(bobs)) == (["b"], [], ["a"])


def test_the_admin_role_may_not_release(client_for, archive_files):
    archive_files({"a": b"a"})
    job = staged_job(client_for(), "/a")
    assert_problem(release(client_for(Role.ADMIN), job.uuid, "/a"), 403)
