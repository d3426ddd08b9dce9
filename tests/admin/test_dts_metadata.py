"""The admin's part of the DTS contract: stores' credit metadata, a file's own, users' ORCIDs."""

import json

import pytest

from staging.models import File, Store, UserProfile
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

CARBERRY = "0000-0002-1825-0097"


def store_form(tmp_path, **fields) -> dict:
    return {
        "slug": "archive",
        "description": "",
        "kind": "posix",
        "archive_root": str(tmp_path / "a"),
        "staging_root": str(tmp_path / "s"),
        "simulated_latency_ms": 0,
        "credit": "{}",
        "sources": "[]",
        **fields,
        # The tape library inline, left empty.
        "tape_library-TOTAL_FORMS": "0",
        "tape_library-INITIAL_FORMS": "0",
    }


def test_the_admin_role_sets_a_stores_credit_metadata(admin_role_client, tmp_path):
    credit = {"license": "CC-BY-4.0", "titles": [{"title": "Soil"}]}
    response = admin_role_client.post(
        "/admin/staging/store/add/", store_form(tmp_path, credit=json.dumps(credit))
    )

    assert response.status_code == 302
    assert Store.objects.get(slug="archive").credit == credit


def test_credit_metadata_the_dts_cannot_read_is_refused_with_the_reason(
    admin_role_client, tmp_path
):
    response = admin_role_client.post(
        "/admin/staging/store/add/",
        store_form(tmp_path, credit=json.dumps({"titles": "Soil", "identifier": "x"})),
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert "credit.titles must be a list or null, not a string" in page
    assert "credit.identifier is set for every file by the service" in page
    assert not Store.objects.filter(slug="archive").exists()


def test_whoever_keeps_stores_sets_a_files_own_metadata_and_nothing_else(
    admin_role_client, archive_files
):
    (file,) = archive_files({"a.txt": b"a"})
    url = f"/admin/staging/file/{file.pk}/change/"
    page = admin_role_client.get(url).content.decode()
    assert 'name="metadata"' in page
    assert 'name="path"' not in page

    response = admin_role_client.post(
        url, {"metadata": json.dumps({"credit": {"version": "7"}}), "path": "elsewhere"}
    )

    assert response.status_code == 302
    file.refresh_from_db()
    assert (file.metadata, file.path) == ({"credit": {"version": "7"}}, "a.txt")


def test_an_orcid_is_given_in_the_admin_and_a_second_holder_is_refused(admin_role_client):
    first, second = UserFactory(username="psyclay"), UserFactory(username="other")

    response = admin_role_client.post(
        "/admin/staging/userprofile/add/", {"user": first.pk, "orcid": CARBERRY}
    )
    assert response.status_code == 302

    response = admin_role_client.post(
        "/admin/staging/userprofile/add/", {"user": second.pk, "orcid": CARBERRY}
    )
    assert response.status_code == 200
    assert "This ORCID already belongs to another user" in response.content.decode()

    response = admin_role_client.post(
        "/admin/staging/userprofile/add/", {"user": second.pk, "orcid": "0000-0002-1825-0098"}
    )
    assert "check character" in response.content.decode()
    assert list(UserProfile.objects.values_list("user__username", "orcid")) == [
        ("psyclay", CARBERRY)
    ]


def test_the_data_admin_role_does_not_manage_orcids(operator_client):
    assert operator_client.get("/admin/staging/userprofile/").status_code == 403


def test_a_file_can_only_carry_credit_and_sources(admin_role_client, archive_files):
    (file,) = archive_files({"a.txt": b"a"})
    response = admin_role_client.post(
        f"/admin/staging/file/{file.pk}/change/", {"metadata": json.dumps({"doi": "10.1/x"})}
    )
    assert "doi is not file metadata; use credit or sources" in response.content.decode()
    assert File.objects.get(pk=file.pk).metadata == {}
