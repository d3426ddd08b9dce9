"""Paths the filesystem or the catalogue cannot hold: a name longer than the filesystem allows
fails that file with a reason, as any missing file does; a path longer than a catalogue row
holds is a 400 that says so. Never a 500."""

import pytest

from staging.models import Job

pytestmark = pytest.mark.django_db


def test_a_name_too_long_for_any_filesystem_is_a_400_naming_the_limit(client_for, store):
    path = "/" + "0" * 1000  # one name far past NAME_MAX (255 on Linux filesystems)

    response = client_for().post("/tape/api/v1/stage", {"files": [{"path": path}]}, format="json")

    assert response.status_code == 400, response.content
    assert "255 bytes" in response.json()["detail"]
    assert not Job.objects.exists()


def test_a_path_longer_than_a_catalogue_row_is_a_400_naming_the_limit(client_for, store):
    response = client_for().post(
        "/tape/api/v1/stage", {"files": [{"path": "/" + "a/" * 600}]}, format="json"
    )
    assert response.status_code == 400, response.content
    assert "1024" in response.json()["detail"]
    assert not Job.objects.exists()
